"""The collection writer: the build's last stage, writing a collection folder (search_core/layout.py).

The dataset is written BLOCK_ROWS rows at a time with datasets' own ArrowWriter, then saved with
``save_to_disk``: memory holds one block of images, never the collection. Its image column is
- ``copy``: each image's bytes (what ``push_to_hub`` makes self-contained), read from the old
  collection for a row an incremental build kept from it (one Arrow take, no file opened), else
  from the source; files.arrow gets each one's digest on the way;
- ``reference``: a string per row, the path under the image root (the source folder) or the URL.
embeddings.npy is already in the folder (scripts/gather.py wrote it there).
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
from datasets.arrow_writer import ArrowWriter

from scripts.decode import UnusableImage, read_bytes
from scripts.grouping import Grouping
from scripts.identity import digest
from search_core import layout
from search_core.integrity import file_checksums
from search_core.layout import BuildChanges, ImageRoot, IndexInfo, Manifest, MatchScale
from search_core.provenance import DIGEST_BYTES, write_files

BLOCK_ROWS = 4096
MAX_SHARD_BYTES = 500 * 2**20          # datasets' own default shard size for save_to_disk

METADATA_FEATURES = datasets.Features({
    "file_name": datasets.Value("string"), "year": datasets.Value("int32"),
    "title": datasets.Value("string"), "book_id": datasets.Value("string"),
    "volume": datasets.Value("int32"), "page": datasets.Value("int32"),
    "image_number": datasets.Value("int32"),
})


@dataclass(frozen=True)
class Contents:
    """Everything a collection folder holds besides embeddings.npy, ready to be written."""

    source: Any                    # scripts.sources.Source
    metadata: pa.Table             # layout.METADATA_COLUMNS for every source row, in source order
    identities: pa.Table           # files.arrow's columns for every source row, in source order
    rows: np.ndarray               # int64 source rows in collection order
    reuse: np.ndarray              # int64 per source row: the old collection's row, or -1
    old: Path | None               # the collection being replaced (its image bytes are reused)
    old_storage: str | None
    skipped: list[tuple[str, str]]     # (file name, reason)
    storage: str                   # layout.STORAGES
    image_root: Path | None        # the source folder references are relative to
    index: Any                     # faiss.Index
    index_info: IndexInfo
    grouping: Grouping
    scale: MatchScale | None
    model: str
    precision: str
    model_probe: list[float]
    changes: BuildChanges
    started: float                 # time.perf_counter() when the build began


def write_collection(tmp: Path, out: Path, contents: Contents, on_rows: Callable[[int], None]) -> Manifest:
    """Write everything but embeddings.npy into `tmp` (renamed to `out` by the caller)."""
    import faiss

    digests = _write_dataset(tmp, contents, on_rows)
    files = contents.identities.take(pa.array(contents.rows))
    if digests is not None:
        files = files.set_column(files.schema.get_field_index("digest"), "digest", digests)
    write_files(tmp, files)
    faiss.write_index(contents.index, str(tmp / layout.INDEX))
    np.save(tmp / layout.GROUPS, contents.grouping.group_of)
    with open(tmp / layout.SKIPPED, "w", encoding="utf-8") as f:
        f.writelines(json.dumps({"file": name, "reason": reason}) + "\n" for name, reason in contents.skipped)
    vectors = np.load(tmp / layout.EMBEDDINGS, mmap_mode="r")
    manifest = Manifest(
        format_version=layout.FORMAT_VERSION, model=contents.model, embedding_dim=int(vectors.shape[1]),
        metric="ip", rows=len(contents.rows), index=contents.index_info, source=contents.source.description,
        built_at=datetime.now(timezone.utc).isoformat(timespec="seconds"), model_probe=contents.model_probe,
        precision=contents.precision, skipped=len(contents.skipped), checksums=file_checksums(tmp),
        duplicates=contents.grouping.info, match_scale=contents.scale, build_id=layout.new_build_id(),
        build_seconds=round(time.perf_counter() - contents.started, 3), storage=contents.storage,
        image_root=_image_root(contents.image_root, out) if contents.storage == layout.STORAGE_REFERENCE else None,
        changes=contents.changes, embeddings_column=contents.source.embeddings_column,
    )
    manifest.write(tmp)
    return manifest


def _image_root(root: Path | None, out: Path) -> ImageRoot | None:
    """The source folder, absolute and relative to the collection folder (where one exists)."""
    if root is None:
        return None
    absolute = os.path.abspath(root)
    try:
        relative = Path(os.path.relpath(absolute, os.path.abspath(out))).as_posix()
    except ValueError:      # another drive (Windows)
        relative = None
    return ImageRoot(absolute=absolute, relative=relative)


def _kept_columns(src: Any) -> list[str]:
    """The source's other scalar columns, kept as they are (a shelfmark, a label)."""
    return [c for c, f in src.dataset.features.items()
            if c != src.image_column and c not in layout.METADATA_COLUMNS and c != "image"
            and isinstance(f, (datasets.Value, datasets.ClassLabel))]


def _write_dataset(tmp: Path, contents: Contents, on_rows: Callable[[int], None]) -> pa.Array | None:
    """dataset/ in collection order; returns the digests of the copied images (None for references)."""
    src = contents.source
    keep = _kept_columns(src)
    copy = contents.storage == layout.STORAGE_COPY
    features = datasets.Features({**METADATA_FEATURES, **{c: src.dataset.features[c] for c in keep},
                                  "image": datasets.Image() if copy else datasets.Value("string")})
    source_rows = src.dataset.with_format("arrow")
    old_images = None
    if copy and contents.old is not None and contents.old_storage == layout.STORAGE_COPY:
        old_images = datasets.load_from_disk(str(contents.old / layout.DATASET_DIR)).with_format("arrow")
    digests: list[pa.Array] = []

    def blocks() -> Iterator[pa.Table]:
        for start in range(0, len(contents.rows), BLOCK_ROWS):
            rows = contents.rows[start:start + BLOCK_ROWS]
            table = contents.metadata.take(pa.array(rows))
            extra = source_rows.select_columns(keep)[rows.tolist()] if keep else None
            if copy:
                images, block_digests = _copied_images(rows, contents, source_rows, old_images)
                digests.append(block_digests)
            else:
                images = _references(rows, contents, source_rows)
            yield pa.table({**{c: table.column(c) for c in layout.METADATA_COLUMNS},
                            **({c: extra.column(c) for c in keep} if extra is not None else {}), "image": images})
            on_rows(len(rows))

    write_saved_dataset(tmp / layout.DATASET_DIR, features, blocks())
    if not copy:
        return None
    return pa.concat_arrays(digests) if digests else pa.array([], pa.binary(DIGEST_BYTES))


def write_saved_dataset(folder: Path, features: datasets.Features, tables: Iterable[pa.Table],
                        max_shard_bytes: int = MAX_SHARD_BYTES) -> None:
    """Write what ``Dataset.save_to_disk`` writes (``data-00000-of-0000N.arrow`` shards, state.json,
    dataset_info.json) straight from `tables`, so ``load_from_disk`` opens it.

    save_to_disk needs a Dataset first, i.e. a full Arrow file written once more and read back
    through a memory map: a second write of every image, and resident pages as large as the
    dataset (measured: the build's peak RSS grew with the image bytes). Here each block is written
    once, through a plain file.
    """
    folder.mkdir(parents=True)
    shards: list[Path] = []
    writer = None
    written = 0
    try:
        for table in tables:
            if writer is None or written >= max_shard_bytes:
                if writer is not None:
                    writer.finalize()
                    writer.close()
                shards.append(folder / f"shard-{len(shards):05d}.arrow")
                writer = ArrowWriter(features=features, path=str(shards[-1]))
                written = 0
            writer.write_table(table)
            written += table.nbytes
        if writer is None:       # no rows: one empty shard, as save_to_disk writes
            shards.append(folder / "shard-00000.arrow")
            writer = ArrowWriter(features=features, path=str(shards[-1]))
        writer.finalize()
    finally:
        if writer is not None:
            writer.close()
    names = [f"data-{i:05d}-of-{len(shards):05d}.arrow" for i in range(len(shards))]
    for shard, name in zip(shards, names):
        os.rename(shard, folder / name)
    state = {"_data_files": [{"filename": name} for name in names], "_fingerprint": secrets.token_hex(8),
             "_format_columns": None, "_format_kwargs": {}, "_format_type": None, "_output_all_columns": False,
             "_split": None}
    (folder / datasets.config.DATASET_STATE_JSON_FILENAME).write_text(
        json.dumps(state, indent=2, sort_keys=True), encoding="utf-8")
    datasets.DatasetInfo(features=features).write_to_directory(str(folder), pretty_print=True)


def _copied_images(rows: np.ndarray, contents: Contents, source_rows: Any,
                   old_images: Any) -> tuple[pa.Array, pa.Array]:
    """The block's images as {bytes, path}, bytes from the old collection where it kept the row."""
    src = contents.source
    old_rows = contents.reuse[rows]
    stored: list[dict | None] = [None] * len(rows)
    if old_images is not None and (old_rows >= 0).any():
        at = np.flatnonzero(old_rows >= 0)
        column = old_images.select_columns(["image"])[old_rows[at].tolist()].column("image").to_pylist()
        for i, value in zip(at.tolist(), column):
            stored[i] = value if value and value.get("bytes") else None
    missing = [i for i, value in enumerate(stored) if value is None]
    if missing and src.image_column is not None:       # None: vectors from an embeddings column, no images
        items = source_rows.select_columns([src.image_column])[rows[missing].tolist()].column(src.image_column)
        for i, item in zip(missing, items.to_pylist()):
            stored[i] = _with_bytes(item)
    block_digests = [digest(v["bytes"]) if v and v.get("bytes") else None for v in stored]
    return (pa.array(stored, pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
            pa.array(block_digests, pa.binary(DIGEST_BYTES)))


def _with_bytes(item: dict | None) -> dict | None:
    """A source image as the collection stores it: its bytes, and its file name as the path."""
    if not item:
        return None
    try:
        data = read_bytes(item)
    except UnusableImage:
        return None           # gone since it was embedded: the row shows a placeholder
    path = item.get("path")
    return {"bytes": data, "path": os.path.basename(path.split("::", 1)[0]) if path else None}


def _references(rows: np.ndarray, contents: Contents, source_rows: Any) -> pa.Array:
    """The block's references: each file's path under the image root, or its URL."""
    src = contents.source
    items = source_rows.select_columns([src.image_column])[rows.tolist()].column(src.image_column)
    return pa.array([reference_of((item or {}).get("path"), contents.image_root) for item in items.to_pylist()],
                    pa.string())


def reference_of(path: str | None, root: Path | None) -> str | None:
    """What a referenced collection stores for a source image: an http(s) URL as it is, a local
    file as its posix path relative to `root`; None for anything else (the build refuses those
    sources before embedding, scripts/references.py)."""
    if not path:
        return None
    if path.startswith(("http://", "https://")):
        return path
    if root is None or "://" in path or "::" in path:
        return None
    relative = os.path.relpath(os.path.abspath(path), os.path.abspath(root))
    return None if relative.startswith("..") else Path(relative).as_posix()
