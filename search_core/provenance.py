"""files.arrow: where each row's image came from, and how the file looked when it was embedded.

Row i describes dataset row i. An incremental build (scripts/incremental.py) matches the source's
files to these rows by ``key`` and re-embeds only what is new or changed; `imagesearch verify`
compares a referenced collection's files with ``size``. An Arrow IPC file: columns, not a Python
object per row, and memory-mapped when read (a million rows are ~80 MB).

- key: the source's name for the image, unique in the collection: a local file's path relative to
  the source folder (or absolute, for a dataset of paths), an archive member, a URL, else the
  dataset's own path or file name, else the content digest; the k-th repeat of a name gets "#k".
- size, mtime_ns: the local file's, when it has them (null otherwise).
- digest: blake2b-128 of the image's bytes, when the build read them (null for a row it reused
  without reading, from a collection built before digests were kept).
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from search_core import layout

DIGEST_BYTES = 16
SCHEMA = pa.schema([
    pa.field("key", pa.string(), nullable=False),
    pa.field("size", pa.int64()),
    pa.field("mtime_ns", pa.int64()),
    pa.field("digest", pa.binary(DIGEST_BYTES)),
])


def write_files(folder: Path, table: pa.Table) -> None:
    """Write files.arrow into a collection folder being built."""
    table = table.select(SCHEMA.names).cast(SCHEMA)
    with pa.OSFile(str(Path(folder) / layout.FILES), "wb") as sink, pa.ipc.new_file(sink, SCHEMA) as writer:
        writer.write_table(table, max_chunksize=1 << 16)


def read_files(folder: Path) -> pa.Table | None:
    """The collection's files.arrow, memory-mapped; None when it has none (built before it existed).

    Raises OSError or pyarrow.ArrowInvalid for a damaged file.
    """
    path = Path(folder) / layout.FILES
    if not path.is_file():
        return None
    table = pa.ipc.open_file(pa.memory_map(str(path))).read_all()
    if not table.schema.equals(SCHEMA, check_metadata=False):
        raise pa.ArrowInvalid(f"{layout.FILES} has columns {table.schema.names}, not {SCHEMA.names}")
    return table
