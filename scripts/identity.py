"""Who each source image is, and how it looks now: the columns of files.arrow (search_core/provenance.py).

An incremental build (scripts/incremental.py) matches a source's images to the collection's rows
by ``key`` and decides from the rest whether an image changed:
- a local file: its path relative to the source folder (absolute where it is not under it),
  size and modification time from one stat, as rclip does; no bytes are read;
- an image whose bytes the source holds (a saved or Hub dataset): its path or file name, and a
  blake2b-128 digest of the bytes (the Arrow data is memory-mapped: hashing runs at ~1 GB/s);
- an archive member (``zip://a/b.jpg::...``): the member's path, and the digest of its bytes;
- an http(s) URL: the URL; nothing else is known without downloading it, so it counts as
  unchanged while its address is.
A name that repeats gets "#2", "#3", ... in source order, so keys are unique.
Everything is built as Arrow columns in blocks: no Python object per row outlives its block.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from search_core.provenance import DIGEST_BYTES, SCHEMA

BLOCK_ROWS = 65_536


def digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=DIGEST_BYTES).digest()


def is_local(path: str) -> bool:
    return "://" not in path and "::" not in path


def archive_member(path: str) -> str:
    """``zip://1850/a.jpg::/cache/x.zip`` -> ``1850/a.jpg``: the part that names the image."""
    return path.split("::", 1)[0].split("://", 1)[-1]


def source_identities(images: pa.ChunkedArray | pa.Array, names: pa.ChunkedArray | pa.Array,
                      root: Path | None = None) -> pa.Table:
    """files.arrow's columns (key, size, mtime_ns, digest) for every row of an undecoded datasets
    Image column (struct of bytes and path), in row order. `names` are the rows' file names, the
    key of a row with bytes and no path; `root`, the source folder keys of local files are
    relative to."""
    images = _chunked(images)
    names = _chunked(names)
    root_text = None if root is None else os.path.abspath(root)
    blocks = []
    for start in range(0, len(images), BLOCK_ROWS):
        block = images.slice(start, BLOCK_ROWS).combine_chunks()
        blocks.append(_identity_block(block, names.slice(start, BLOCK_ROWS).to_pylist(), root_text))
    table = pa.concat_tables(blocks) if blocks else SCHEMA.empty_table()
    return table.set_column(0, SCHEMA.field("key"), unique_keys(table.column("key")))


def folder_identities(paths: pa.Array, root: Path | None, sizes: np.ndarray, mtimes: np.ndarray) -> pa.Table:
    """The identities of a folder listing (scripts/folder_scan.py): every path is under `root`, and
    its stat was taken while listing, so no file is touched again: Arrow string operations only.
    With root None (a listing of object storage: the Ray engine's s3:// and gs:// folders) the
    keys are the URLs themselves."""
    keys = paths
    if root is not None:
        prefix = os.path.abspath(root).rstrip(os.sep) + os.sep
        keys = pc.replace_substring(paths, pattern=prefix, replacement="", max_replacements=1)
        if os.sep != "/":
            keys = pc.replace_substring(keys, pattern=os.sep, replacement="/")
    n = len(paths)
    table = pa.table({"key": keys, "size": pa.array(sizes, pa.int64()), "mtime_ns": pa.array(mtimes, pa.int64()),
                      "digest": pa.nulls(n, pa.binary(DIGEST_BYTES))}, schema=SCHEMA)
    return table


def _identity_block(block: pa.StructArray, names: list[str | None], root: str | None) -> pa.Table:
    paths = pc.struct_field(block, "path").to_pylist()
    data = pc.struct_field(block, "bytes")
    n = len(paths)
    keys: list[str] = []
    sizes = np.full(n, -1, np.int64)
    mtimes = np.full(n, -1, np.int64)
    digests: list[bytes | None] = [None] * n
    for i, (path, name, stored) in enumerate(zip(paths, names, _bytes_of(data))):
        if stored is not None:
            keys.append(path or name or "")
            sizes[i] = len(stored)
            digests[i] = digest(stored)
        elif path and is_local(path):
            keys.append(_local_key(path, root))
            try:
                st = os.stat(path)
                sizes[i], mtimes[i] = st.st_size, st.st_mtime_ns
            except OSError:
                pass        # embedding will skip it and say why
        elif path and not path.startswith(("http://", "https://")):
            keys.append(archive_member(path))
            digests[i] = _read_digest(path)
        else:
            keys.append(path or name or "")
    for i, key in enumerate(keys):
        if not key:
            keys[i] = digests[i].hex() if digests[i] is not None else f"row-{i}"
    return pa.table({
        "key": pa.array(keys, pa.string()),
        "size": pa.array(sizes, mask=sizes < 0),
        "mtime_ns": pa.array(mtimes, mask=mtimes < 0),
        "digest": pa.array(digests, pa.binary(DIGEST_BYTES)),
    }, schema=SCHEMA)


def _bytes_of(data: pa.Array) -> Iterator[bytes | None]:
    """Each row's bytes, or None where the row has none (null or empty)."""
    for value in data:
        raw = value.as_py() if value.is_valid else None
        yield raw if raw else None


def _local_key(path: str, root: str | None) -> str:
    absolute = os.path.abspath(path)
    if root is not None:
        relative = os.path.relpath(absolute, root)
        if not relative.startswith(".."):
            return PurePosixPath(*Path(relative).parts).as_posix()
    return absolute


def _read_digest(path: str) -> bytes | None:
    from scripts.decode import UnusableImage, read_bytes

    try:
        return digest(read_bytes(path))
    except UnusableImage:
        return None


def unique_keys(keys: pa.ChunkedArray | pa.Array) -> pa.Array:
    """Keys with the k-th repeat of a key renamed "key#k" (k from 2), in row order."""
    keys = _chunked(keys).combine_chunks()
    counts = pc.value_counts(keys)
    repeated = counts.field("values").filter(pc.greater(counts.field("counts"), 1))
    if len(repeated) == 0:
        return keys
    rows = np.flatnonzero(pc.is_in(keys, value_set=repeated).to_numpy(zero_copy_only=False))
    values = keys.to_pylist()          # only here, for a source whose names repeat
    taken = set(values)
    seen: dict[str, int] = {}
    for row in rows.tolist():
        key = values[row]
        seen[key] = seen.get(key, 0) + 1
        if seen[key] > 1:
            k = seen[key]
            while f"{key}#{k}" in taken:
                k += 1
            values[row] = f"{key}#{k}"
            taken.add(values[row])
    return pa.array(values, pa.string())


def _chunked(array: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray:
    return array if isinstance(array, pa.ChunkedArray) else pa.chunked_array([array])
