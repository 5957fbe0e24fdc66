"""Open a build SOURCE as one `datasets.Dataset` whose image column is not decoded.

SOURCE kinds, tried in this order:
- a folder written by ``save_to_disk`` (a Dataset, or a DatasetDict: its "train" split or its
  only split);
- any other folder: the ``imagefolder`` layout (year sub-folders become a ClassLabel ``label``),
  listed by scripts/folder_scan.py (the same rows, ~40x faster; its stats are the files' identities
  for an incremental build), or by imagefolder itself where metadata files add columns;
- a Parquet file (``Dataset.from_parquet``);
- an http(s) URL of an archive: ``imagefolder`` with ``data_files=URL``, as the seed does;
- anything else: a Hub dataset id for ``load_dataset``.

Images stay undecoded (``Image(decode=False)``): the build decodes them itself so that a broken
file is skipped with a reason instead of failing the whole build. A source whose vectors come
from an embeddings column needs no images at all (rows without one are kept, image null).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
import pyarrow.compute as pc

from scripts.folder_scan import has_metadata_files, scan_folder
from search_core.errors import BuildError

log = logging.getLogger(__name__)

# Files that save_to_disk writes at the top of a Dataset / DatasetDict folder.
_SAVED_DATASET = ("state.json", "dataset_info.json")
_SAVED_DATASET_DICT = "dataset_dict.json"


@dataclass(frozen=True)
class Source:
    """The opened source: its rows, and which columns hold the images and precomputed vectors."""

    dataset: datasets.Dataset
    image_column: str | None        # None: no images (only with an embeddings column)
    description: str                # what the user passed, for the manifest
    embeddings_column: str | None = None
    root: Path | None = None        # the image folder (keys of an incremental build, references are relative to it)
    stats: tuple[np.ndarray, np.ndarray] | None = None   # (size, mtime_ns) per row, taken while listing the folder


def open_source(source: str, *, embeddings_column: str | None = None) -> Source:
    """Open SOURCE; BuildError with one readable sentence for anything that cannot be used.

    With `embeddings_column` the column must exist and hold vectors of numbers (checked here,
    before any model is loaded), and an image column is optional.
    """
    if not source or not source.strip():
        raise BuildError("No source given: pass an image folder, a saved dataset, a Hub id or a zip URL.")
    path = Path(source).expanduser()
    root = stats = None
    if source.startswith(("http://", "https://")):
        dataset = _load_remote(lambda: _load_archive(source), source)
    elif path.is_dir():
        dataset, stats = _open_folder(path, images_needed=embeddings_column is None)
        root = None if _is_saved_dataset(path) else path.absolute()
    elif path.is_file() and path.suffix.lower() == ".parquet":
        dataset = _open_parquet(path)
    elif path.exists():
        raise BuildError(f"Source {source} is a file; pass a folder of images, a saved dataset, "
                         "a Parquet file, a Hub dataset id or an http(s) URL of a zip.")
    elif _looks_like_path(source):
        raise BuildError(f"Source folder {source} does not exist.")
    else:
        dataset = _load_remote(lambda: datasets.load_dataset(source), source)

    dataset = _single_split(dataset, source)
    if embeddings_column is not None:
        from scripts.precomputed import vector_column_type

        vector_column_type(dataset, embeddings_column, source)
        image_column = _image_column(dataset, source, required=False)
    else:
        image_column = _image_column(dataset, source)
    if len(dataset) == 0:
        raise BuildError(f"Source {source} has no {'rows' if embeddings_column else 'images'}.")
    if image_column is not None:
        dataset = dataset.cast_column(image_column, datasets.Image(decode=False))
    return Source(dataset=dataset, image_column=image_column, description=source,
                  embeddings_column=embeddings_column, root=root, stats=stats)


def _looks_like_path(source: str) -> bool:
    """A Hub id is 'name' or 'owner/name'; anything with more parts or path syntax is a path."""
    return (source.startswith((".", "/", "~")) or source.count("/") > 1 or "\\" in source
            or source.endswith("/"))


def _is_saved_dataset(path: Path) -> bool:
    return (path / _SAVED_DATASET_DICT).is_file() or all((path / f).is_file() for f in _SAVED_DATASET)


def _open_folder(path: Path, images_needed: bool = True) -> tuple[datasets.Dataset | datasets.DatasetDict,
                                                                   tuple[np.ndarray, np.ndarray] | None]:
    """The folder's rows, and the (size, mtime_ns) of each file where the folder was listed here."""
    if _is_saved_dataset(path):
        try:
            return datasets.load_from_disk(str(path)), None
        except Exception as exc:
            raise BuildError(f"Could not open the saved dataset at {path}: {exc}") from exc
    if not images_needed:
        raise BuildError(f"Source folder {path} is not a saved dataset (no {_SAVED_DATASET_DICT}, or "
                         f"{' and '.join(_SAVED_DATASET)}); --embeddings-column needs a saved dataset, "
                         "a Parquet file or a Hub dataset id.")
    files = [p for p in path.rglob("*") if p.is_file()]
    if not files:
        raise BuildError(f"Source folder {path} is empty.")
    # imagefolder's own list of extensions: what it would pick up.
    from datasets.packaged_modules.imagefolder.imagefolder import ImageFolder

    extensions = {e.lower() for e in ImageFolder.EXTENSIONS}
    if not any(p.suffix.lower() in extensions for p in files):
        raise BuildError(f"Source folder {path} has no image files ({len(files)} other files).")
    if not has_metadata_files(path):
        scan = scan_folder(path)
        if scan is None:
            raise BuildError(f"Source folder {path} has no image files.")
        return scan.dataset, (scan.sizes, scan.mtimes)
    try:
        return datasets.load_dataset("imagefolder", data_dir=str(path)), None
    except datasets.data_files.EmptyDatasetError as exc:
        raise BuildError(f"Source folder {path} has no image files.") from exc
    except Exception as exc:
        raise BuildError(f"Could not read the image folder {path}: {exc}") from exc


def _open_parquet(path: Path) -> datasets.Dataset:
    try:
        return datasets.Dataset.from_parquet(str(path))
    except Exception as exc:  # pyarrow and datasets raise many types for a broken file
        raise BuildError(f"Could not read the Parquet file {path}: {type(exc).__name__}: {exc}") from exc


def _load_remote(load, source: str) -> datasets.Dataset | datasets.DatasetDict:
    try:
        return load()
    except datasets.data_files.EmptyDatasetError as exc:
        raise BuildError(f"Source {source} has no image files.") from exc
    except Exception as exc:
        # A download that fails without a network surfaces in datasets as an empty split.
        if _caused_by(exc, "corresponds to no data"):
            raise BuildError(f"Could not download {source}: nothing came back. Check the network "
                             "connection and the address, or build from a local folder.") from exc
        raise BuildError(f"Could not load dataset {source!r}: {type(exc).__name__}: {exc}") from exc


def _load_archive(url: str) -> datasets.DatasetDict:
    """imagefolder over an archive URL, as the seed does.

    datasets 5.2 names an archive member's class label after the folder holding the *archive*
    (folder_based_builder uses ``original_file``), so an archive with year folders fails with
    "Invalid string class label". Then load without labels: the year folder is still in each
    member's path (``zip://1850/x.jpg::...``), where scripts.metadata finds it.
    """
    try:
        return datasets.load_dataset("imagefolder", data_files=url)
    except Exception as exc:
        if not _caused_by(exc, "Invalid string class label"):
            raise
        log.info("imagefolder label bug on an archive; loading %s without labels", url)
        return datasets.load_dataset("imagefolder", data_files=url, drop_labels=True)


def _caused_by(exc: BaseException | None, text: str) -> bool:
    seen = 0
    while exc is not None and seen < 10:
        if text in str(exc):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def _single_split(dataset: datasets.Dataset | datasets.DatasetDict, source: str) -> datasets.Dataset:
    """A DatasetDict's "train" split, or its only split; a Dataset as it is."""
    if isinstance(dataset, datasets.Dataset):
        return dataset
    if isinstance(dataset, (datasets.IterableDataset, datasets.IterableDatasetDict)):
        raise BuildError(f"Source {source} is a streaming dataset; save it with save_to_disk first.")
    splits = list(dataset.keys())
    if "train" in dataset:
        return dataset["train"]
    if len(splits) == 1:
        return dataset[splits[0]]
    raise BuildError(f"Source {source} has splits {', '.join(splits)} and none is 'train': "
                     "save the split you want with save_to_disk and build from that.")


def _image_column(dataset: datasets.Dataset, source: str, required: bool = True) -> str | None:
    for name, feature in dataset.features.items():
        if isinstance(feature, datasets.Image):
            return name
    if not required:
        return None
    raise BuildError(f"Source {source} has no image column (columns: {', '.join(dataset.column_names)}).")


def check_referencable(src: Source) -> None:
    """`--images reference` needs a file or URL to point at for every row: BuildError (before any
    embedding) for a source that holds image bytes, or archive members, or rows without a path."""
    if src.image_column is None:
        raise BuildError(f"Source {src.description} has no images to reference; build it with --images copy.")
    images = src.dataset.with_format("arrow")[src.image_column]
    data, paths = pc.struct_field(images, "bytes"), pc.struct_field(images, "path")
    if pc.any(pc.greater(pc.binary_length(data), 0)).as_py():
        raise BuildError(f"Source {src.description} holds its images' bytes, not files: --images reference "
                         "needs image files or http(s) URLs to point at; build it with --images copy.")
    remote = pc.match_substring_regex(paths, r"^https?://")
    if paths.null_count or not pc.all(pc.or_(pc.fill_null(remote, False),
                                             pc.invert(pc.match_substring(paths, "://")))).as_py():
        raise BuildError(f"Source {src.description} has images without a file of their own (archive members, "
                         "or rows without a path): --images reference needs image files or http(s) URLs; "
                         "build it with --images copy.")
    if src.root is None and not pc.all(pc.fill_null(remote, False)).as_py():
        raise BuildError(f"Source {src.description} is not an image folder: --images reference stores paths "
                         "relative to the image folder; build from the folder itself, or with --images copy.")
