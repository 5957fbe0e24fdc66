"""Open a collection folder read-only: manifest, dataset rows, embeddings and FAISS index.

Everything large is memory-mapped (Arrow files, ``embeddings.npy``, ``index.faiss`` where FAISS
allows it), so a big collection opens in a moment and several processes share its pages.
Every way a folder can be broken becomes one `CollectionError` naming the file at fault; one
row's image that cannot be shown is the narrower `ImageUnavailable`, so a caller showing many rows
can draw a placeholder for it and go on.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from search_core import layout
from search_core.collapse import DuplicateGroups, check_group_ids
from search_core.errors import CollectionError, ImageUnavailable, QueryError
from search_core.layout import Manifest
from search_core.references import (
    IMAGE_ROOT_ENV,
    UnreadableReference,
    read_reference,
    resolve_root,
    roots_from_env,
)

log = logging.getLogger(__name__)


def read_index(path: Path) -> Any:
    """Read a FAISS index, memory-mapped where this FAISS build can.

    Measured (anchors/faiss_results.md, faiss 1.15.1): ``IO_FLAG_MMAP_IFC`` maps a Flat index with
    shared file-backed pages and opens in ~0 s, while ``IO_FLAG_MMAP`` copied a Flat index into
    anonymous memory. Flat, SQ, IVF-Flat/SQ/PQ and HNSW all open with ``IO_FLAG_MMAP_IFC`` here;
    an index type that refuses it is read normally.
    """
    import faiss

    flag = getattr(faiss, "IO_FLAG_MMAP_IFC", None)
    if flag is not None:
        try:
            return faiss.read_index(str(path), flag)
        except RuntimeError as exc:
            log.info("index %s cannot be memory-mapped (%s); reading it into memory",
                     path.name, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    return faiss.read_index(str(path))


def apply_index_params(index: Any, params: dict[str, Any]) -> None:
    """Set the build's search-time parameters (nprobe, efSearch) on the index itself.

    `search.SearchService` passes them again with each filtered search, because FAISS search
    parameter objects replace, not extend, the index's own settings.
    """
    import faiss

    if not params:
        return
    text = ",".join(f"{k}={v}" for k, v in params.items())
    try:
        faiss.ParameterSpace().set_index_parameters(index, text)
    except RuntimeError as exc:
        raise CollectionError(f"{layout.MANIFEST} has index parameters this index does not take: {text}.") from exc


@dataclass
class Collection:
    """A collection on disk, opened read-only. Row i of the dataset = embedding i = FAISS id i."""

    path: Path
    manifest: Manifest
    dataset: Any               # datasets.Dataset, memory-mapped Arrow
    embeddings: np.ndarray     # [rows, dim], memory-mapped
    index: Any                 # faiss.Index, ids are row numbers
    groups: DuplicateGroups | None = None   # near-duplicate groups; None: every row its own group
    image_root: Path | None = None          # where referenced images are now (references_images)
    _years: np.ndarray | None = field(default=None, repr=False)
    _known_years: int = field(default=0, repr=False)
    _metadata_view: Any = field(default=None, repr=False)
    _encoded_images: Any = field(default=None, repr=False)   # the image column, undecoded

    @property
    def rows(self) -> int:
        return self.manifest.rows

    @property
    def years(self) -> np.ndarray | None:
        """Known years of rows 0..n-1, ascending (rows of unknown year follow them); None without a year column."""
        return self._years

    @classmethod
    def open(cls, path: str | Path, *, image_roots: Sequence[Path] | None = None) -> Collection:
        """Open and check a collection; raises CollectionError naming the file that is wrong.

        image_roots: folders to look in first for a referenced collection's images (default:
        IMAGESEARCH_IMAGE_ROOT; search_core/references.py).
        """
        path = Path(path)
        if not path.is_dir():
            raise CollectionError(f"No collection at {path}: the folder does not exist.")
        manifest = _read_manifest(path)
        dataset = _read_dataset(path, manifest)
        embeddings = _read_embeddings(path, manifest)
        index = _read_faiss_index(path, manifest)
        groups = _read_groups(path, manifest)
        collection = cls(path=path, manifest=manifest, dataset=dataset, embeddings=embeddings, index=index,
                         groups=groups)
        collection._load_years()
        collection._find_image_root(roots_from_env() if image_roots is None else list(image_roots))
        log.info("opened collection %s: %d rows, index %s", path, manifest.rows, manifest.index.spec)
        return collection

    @property
    def references_images(self) -> bool:
        """Whether the images are read from their source (``--images reference``) rather than stored."""
        return self.manifest.storage == layout.STORAGE_REFERENCE

    def _find_image_root(self, overrides: Sequence[Path]) -> None:
        root = self.manifest.image_root
        if not self.references_images or root is None:
            return
        try:
            samples = [self.reference(r) or "" for r in sorted({0, self.rows // 2, self.rows - 1}) if self.rows]
        except ImageUnavailable:
            samples = []        # no image column: nothing to read, whatever the root
        self.image_root = resolve_root(self.path, root, samples, overrides)
        if not self.image_root.is_dir():
            log.warning("collection %s: its image folder %s is not found; images show as missing until it is "
                        "back, or %s names where it is now", self.path, self.image_root, IMAGE_ROOT_ENV)
        elif str(self.image_root) != root.absolute:
            log.info("collection %s: reading its images from %s (built from %s)", self.path, self.image_root,
                     root.absolute)

    # --- rows -------------------------------------------------------------------------------

    def check_row(self, row: int) -> int:
        """The row as an int; QueryError when it is not in the collection."""
        row = int(row)
        if not 0 <= row < self.rows:
            raise QueryError(f"There is no image number {row} in this collection (it has {self.rows}).")
        return row

    def image(self, row: int) -> Image.Image:
        """The stored image of a row, decoded by `decode_image` exactly as the build decoded it
        before embedding it (EXIF rotation, 16-bit scans, transparency on white).

        Full size: for showing many rows at once use `thumbnail`. Raises ImageUnavailable when the
        row's image cannot be shown, QueryError for a row that is not in the collection.
        """
        from search_core.images import MAX_SOURCE_PIXELS, UndecodableImage, decode_image

        row = self.check_row(row)
        data = self._image_bytes(row)
        try:
            return decode_image(data, max_pixels=MAX_SOURCE_PIXELS)
        except UndecodableImage as exc:
            raise self._unavailable(row, str(exc)) from exc

    def thumbnail(self, row: int, size: int) -> Image.Image:
        """The row's image as `image` shows it, shrunk to fit size x size (never enlarged), decoded
        at reduced scale where the format allows (`search_core.images.decode_thumbnail`).

        A contact sheet asks for one at a time, so a page's memory is one source image, not k.
        Raises ImageUnavailable or QueryError as `image` does.
        """
        from search_core.images import MAX_SOURCE_PIXELS, UndecodableImage, decode_thumbnail

        row = self.check_row(row)
        data = self._image_bytes(row)
        try:
            return decode_thumbnail(data, size, max_pixels=MAX_SOURCE_PIXELS)
        except UndecodableImage as exc:
            raise self._unavailable(row, str(exc)) from exc

    def image_bytes(self, row: int) -> bytes:
        """The encoded image of a row as stored (or as the file it references holds it), undecoded:
        for a caller that keeps the original, such as the review's full-size views. Raises
        ImageUnavailable or QueryError as `image` does."""
        return self._image_bytes(self.check_row(row))

    def reference(self, row: int) -> str | None:
        """Where a row's image is read from when it is not stored: a path (relative to
        `image_root` in a referenced collection) or a URL; None when the bytes are stored."""
        stored = self._stored_image(row)
        return None if stored.get("bytes") else stored.get("path")

    def _stored_image(self, row: int) -> dict[str, Any]:
        """The row's image column as {"bytes", "path"}: a datasets Image, or a referenced
        collection's string column (only a path: datasets' own save_to_disk stats an Image's
        paths, which are relative to the image root, not to the working folder)."""
        if "image" not in self.dataset.column_names:
            raise self._unavailable(row, "this collection stores no images")
        if self._encoded_images is None:
            from datasets import Image as ImageFeature

            images = self.dataset.select_columns(["image"])
            if isinstance(images.features["image"], ImageFeature):
                images = images.cast_column("image", ImageFeature(decode=False))
            self._encoded_images = images
        stored = self._encoded_images[row]["image"]
        return {"bytes": None, "path": stored} if isinstance(stored, str) else (stored or {})

    def _image_bytes(self, row: int) -> bytes:
        """The encoded bytes of a row's image: stored in the dataset, or read from where it names."""
        stored = self._stored_image(row)
        data = stored.get("bytes")
        if data:
            return data
        path = stored.get("path")
        if not path:
            raise self._unavailable(row, "the row has no image")
        if self.references_images:
            try:
                return read_reference(self.image_root, path)
            except UnreadableReference as exc:
                raise self._unavailable(row, str(exc)) from exc
        try:
            return Path(path).read_bytes()        # a row of a source that named its files (not a reference)
        except OSError as exc:
            raise self._unavailable(row, f"its file {Path(path).name} cannot be read "
                                         f"({exc.strerror or type(exc).__name__})") from exc

    @staticmethod
    def _unavailable(row: int, why: str) -> ImageUnavailable:
        return ImageUnavailable(f"Image {row} in {layout.DATASET_DIR}/ cannot be read: {why}", row)

    def metadata(self, row: int) -> dict[str, Any]:
        """Every column of a row except the image, without decoding the image."""
        return self.metadata_rows([self.check_row(row)])[0]

    def metadata_rows(self, rows: Iterable[int]) -> list[dict[str, Any]]:
        """Metadata of several rows in one Arrow ``take`` (cheaper than one lookup per row)."""
        rows = [int(r) for r in rows]
        if not rows:
            return []
        if self._metadata_view is None:
            # datasets' own row lookup binary-searches the Arrow chunk offsets: 0.07 ms for 9 rows
            # of 200k, where pyarrow Table.take over the same 2,000 chunks took 8 ms.
            self._metadata_view = self.dataset.select_columns(
                [c for c in self.dataset.column_names if c != "image"])
        columns = self._metadata_view[rows]
        return [dict(zip(columns, values)) for values in zip(*columns.values())]

    def rows_for_file_names(self, names: Iterable[str]) -> list[int]:
        """Rows whose file name is in names, ascending; names not in the collection are ignored."""
        import pyarrow as pa
        import pyarrow.compute as pc

        wanted = sorted({str(n) for n in names if str(n).strip()})
        if not wanted:
            return []
        column = self.dataset.data.column("file_name")
        mask = pc.is_in(column, value_set=pa.array(wanted, type=column.type))
        rows = np.flatnonzero(mask.to_numpy(zero_copy_only=False)).tolist()
        if len(rows) < len(wanted):
            log.info("%d of %d file names are not in this collection", len(wanted) - len(rows), len(wanted))
        return rows

    # --- years ------------------------------------------------------------------------------

    def _load_years(self) -> None:
        """Read the year column once and check the layout's promise that rows are sorted by year."""
        import pyarrow.compute as pc

        if "year" not in self.dataset.column_names:
            return
        column = self.dataset.data.column("year")
        try:
            column = pc.cast(column, "int64")
        except Exception as exc:  # pyarrow raises several types for a bad cast
            raise CollectionError(f"The year column in {layout.DATASET_DIR}/ is not numeric.") from exc
        valid = column.is_valid().to_numpy(zero_copy_only=False)
        known = int(valid.sum())
        years = column.fill_null(0).to_numpy(zero_copy_only=False)
        if not valid[:known].all() or np.any(np.diff(years[:known]) < 0):
            raise CollectionError(f"Rows in {layout.DATASET_DIR}/ are not sorted by year "
                                  "(known years ascending, unknown last); rebuild the collection.")
        self._years, self._known_years = years[:known], known

    def year_row_range(self, year_from: int | None = None, year_to: int | None = None) -> tuple[int, int]:
        """Rows [start, stop) whose year is within [year_from, year_to], both inclusive.

        With no bound, every row (unknown years too); with any bound, rows of unknown year are out.
        """
        if year_from is None and year_to is None:
            return 0, self.rows
        check_year_range(year_from, year_to)
        if self._years is None:
            raise QueryError("This collection has no years, so it cannot be filtered by year.")
        start = 0 if year_from is None else int(np.searchsorted(self._years, year_from, side="left"))
        stop = self._known_years if year_to is None else int(np.searchsorted(self._years, year_to, side="right"))
        return start, max(start, stop)


def check_year_range(year_from: int | None, year_to: int | None) -> None:
    """QueryError when both bounds are given and the first is after the last."""
    if year_from is not None and year_to is not None and year_from > year_to:
        raise QueryError(f"The first year ({year_from}) is after the last year ({year_to}).")


# --- opening, one file at a time -------------------------------------------------------------

def _read_manifest(path: Path) -> Manifest:
    file = path / layout.MANIFEST
    if not file.is_file():
        raise CollectionError(f"{path} is not a collection: {layout.MANIFEST} is missing.")
    try:
        raw = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CollectionError(f"{layout.MANIFEST} in {path} cannot be read: {exc}") from exc
    version = raw.get("format_version") if isinstance(raw, dict) else None
    if version != layout.FORMAT_VERSION:
        raise CollectionError(f"{layout.MANIFEST} has format version {version!r}; this program reads "
                              f"version {layout.FORMAT_VERSION}. Rebuild the collection or update the program.")
    try:
        manifest = Manifest.from_dict(raw)
    except (TypeError, KeyError, ValueError) as exc:
        raise CollectionError(f"{layout.MANIFEST} in {path} is incomplete or malformed: {exc}") from exc
    if manifest.metric != "ip":
        raise CollectionError(f"{layout.MANIFEST} names metric {manifest.metric!r}; only 'ip' is supported.")
    return manifest


def _read_dataset(path: Path, manifest: Manifest) -> Any:
    from datasets import load_from_disk

    folder = path / layout.DATASET_DIR
    if not folder.is_dir():
        raise CollectionError(f"The collection at {path} is incomplete: {layout.DATASET_DIR}/ is missing.")
    try:
        dataset = load_from_disk(str(folder))
    except Exception as exc:  # datasets raises many types for a broken folder
        raise CollectionError(f"{layout.DATASET_DIR}/ in {path} cannot be read: {type(exc).__name__}: {exc}") from exc
    if not hasattr(dataset, "num_rows") or isinstance(dataset.num_rows, dict):
        raise CollectionError(f"{layout.DATASET_DIR}/ in {path} holds a DatasetDict, not one Dataset.")
    if dataset.num_rows != manifest.rows:
        raise CollectionError(f"{layout.DATASET_DIR}/ has {dataset.num_rows} rows but {layout.MANIFEST} "
                              f"says {manifest.rows}.")
    if "file_name" not in dataset.column_names:
        raise CollectionError(f"{layout.DATASET_DIR}/ in {path} has no file_name column.")
    return dataset


def _load_array(path: Path, name: str) -> np.ndarray:
    """A .npy file of the collection, memory-mapped; CollectionError when missing or corrupt."""
    file = path / name
    if not file.is_file():
        raise CollectionError(f"The collection at {path} is incomplete: {name} is missing.")
    try:
        return np.load(file, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise CollectionError(f"{name} in {path} is corrupt: {exc}") from exc


def _read_embeddings(path: Path, manifest: Manifest) -> np.ndarray:
    embeddings = _load_array(path, layout.EMBEDDINGS)
    expected = (manifest.rows, manifest.embedding_dim)
    if embeddings.shape != expected:
        raise CollectionError(f"{layout.EMBEDDINGS} has shape {embeddings.shape}; {layout.MANIFEST} "
                              f"says {expected}.")
    # A plain ndarray over the same mapped pages: np.memmap's __getitem__ wraps every gather in a
    # subclass instance, 10% of the re-rank's row reads (150 rows: 83 against 74 us).
    return np.asarray(embeddings)


def _read_faiss_index(path: Path, manifest: Manifest) -> Any:
    file = path / layout.INDEX
    if not file.is_file():
        raise CollectionError(f"The collection at {path} is incomplete: {layout.INDEX} is missing.")
    try:
        index = read_index(file)
    except RuntimeError as exc:
        raise CollectionError(f"{layout.INDEX} in {path} is corrupt or not a FAISS index.") from exc
    if index.ntotal != manifest.rows:
        raise CollectionError(f"{layout.INDEX} holds {index.ntotal} vectors but {layout.MANIFEST} "
                              f"says {manifest.rows} rows.")
    if index.d != manifest.embedding_dim:
        raise CollectionError(f"{layout.INDEX} has dimension {index.d} but {layout.MANIFEST} "
                              f"says {manifest.embedding_dim}.")
    apply_index_params(index, manifest.index.params)
    return index


def _read_groups(path: Path, manifest: Manifest) -> DuplicateGroups | None:
    """The near-duplicate groups, or None for a collection built before grouping existed."""
    if manifest.duplicates is None:
        return None
    group_of = _load_array(path, layout.GROUPS)
    problem = check_group_ids(group_of, manifest.rows)
    if problem is not None:
        raise CollectionError(f"{layout.GROUPS} in {path} {problem}; rebuild the collection.")
    return DuplicateGroups(group_of)
