"""List an image folder as datasets' ``imagefolder`` would, without its builder: one walk and one stat
a file, straight into Arrow columns.

``load_dataset("imagefolder", data_dir=...)`` spent 55 s on 25,000 files here (about 2 ms a file,
a cached second load no faster: it resolves and hashes the file list again), where a walk with a
stat per file took 0.4 s. An incremental build scans the whole source every time, so that was
most of its cost. Same result: image files by imagefolder's own extension list (any case), hidden
files and folders and those starting with "__" left out, sorted by path; a ClassLabel ``label``
from the parent folder's name when every file sits at the same depth and there are several such
folders (imagefolder's rule); the image column undecoded ({"bytes": None, "path": absolute path}).
A folder with a metadata.csv / .jsonl / .parquet (extra columns per file) is left to imagefolder,
which reads them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa

METADATA_FILES = ("metadata.csv", "metadata.jsonl", "metadata.parquet")


@dataclass(frozen=True)
class FolderScan:
    dataset: datasets.Dataset      # column "image" (Image(decode=False)), and "label" where imagefolder makes one
    sizes: np.ndarray              # int64 bytes per row (one stat each, taken while listing)
    mtimes: np.ndarray             # int64 st_mtime_ns per row


def image_extensions() -> frozenset[str]:
    from datasets.packaged_modules.imagefolder.imagefolder import ImageFolder

    return frozenset(e.lower() for e in ImageFolder.EXTENSIONS)


def has_metadata_files(root: Path) -> bool:
    return any(name in METADATA_FILES for _, _, files in _walk(root) for name in files)


def _walk(root: Path):
    for base, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "__")))
        yield base, dirs, sorted(f for f in files if not f.startswith((".", "__")))


def scan_folder(root: Path) -> FolderScan | None:
    """The folder's images as a Dataset, or None when it has no image file.

    Rows in walk order (a folder's files by name, then its sub-folders by name): deterministic,
    and each folder's paths become an Arrow array as soon as it is listed, so no Python string per
    file outlives its folder.
    """
    root = Path(root).absolute()
    extensions = image_extensions()
    path_chunks: list[pa.Array] = []
    sizes: list[np.ndarray] = []
    mtimes: list[np.ndarray] = []
    folders: list[tuple[str, int]] = []       # (folder name, files listed in it)
    depths: set[int] = set()
    for base, _dirs, files in _walk(root):
        paths, stats = [], []
        for name in files:
            if os.path.splitext(name)[1].lower() not in extensions:
                continue
            path = os.path.join(base, name)
            try:
                st = os.stat(path)
            except OSError:
                continue        # vanished while listing
            paths.append(path)
            stats.append((st.st_size, st.st_mtime_ns))
        if not paths:
            continue
        path_chunks.append(pa.array(paths, pa.string()))
        both = np.asarray(stats, dtype=np.int64)
        sizes.append(both[:, 0])
        mtimes.append(both[:, 1])
        folders.append((os.path.basename(base), len(paths)))
        depths.add(len(Path(base).relative_to(root).parts))
    if not path_chunks:
        return None
    path_column = pa.concat_arrays(path_chunks)
    n = len(path_column)
    images = pa.StructArray.from_arrays([pa.nulls(n, pa.binary()), path_column], names=["bytes", "path"])
    columns = {"image": images}
    features = {"image": datasets.Image(decode=False)}
    labels = sorted({name for name, _ in folders})
    if len(labels) > 1 and len(depths) == 1:
        index = {name: i for i, name in enumerate(labels)}
        columns["label"] = pa.array(np.repeat([index[name] for name, _ in folders], [c for _, c in folders]))
        features["label"] = datasets.ClassLabel(names=labels)
    dataset = datasets.Dataset(pa.table(columns)).cast(datasets.Features(features))
    return FolderScan(dataset=dataset, sizes=np.concatenate(sizes), mtimes=np.concatenate(mtimes))
