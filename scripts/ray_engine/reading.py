"""Sources for the Ray engine: the driver's view of the rows, and Ray Data reading them for the workers.

Every row has a source key (uint64) that both sides compute alike, so a worker's part can be
matched to its row whatever order Ray Data delivered it in:
- local folders, saved datasets, Hub ids (`scripts.sources.open_source`, as the local engine): the
  row number. Ray tasks read the rows from the same `datasets.Dataset` (its Arrow files, and the
  image files it names: on a cluster, a path every node sees);
- an ``s3://``, ``gs://`` or ``file://`` folder of images: the file's path. Listed with pyarrow's
  filesystems, read by `ray.data.read_binary_files`;
- such a folder of Parquet shards: the shard's path and the image's name (the image's own path, or
  a key or file-name column), read by `ray.data.read_parquet`;
- such a folder of WebDataset shards (.tar): the shard's path and the sample's ``__key__``, read by
  `ray.data.read_webdataset`.
The driver keeps a `datasets.Dataset` of the rows for what the local engine does with it
(metadata, year order, the collection's copy of each image): image folders as URLs (fetched with
fsspec when the collection is written), shards loaded with datasets' own parquet and webdataset
builders.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from scripts.sources import Source, open_source
from search_core.errors import BuildError

log = logging.getLogger(__name__)

REMOTE_SCHEMES = ("s3://", "gs://", "gcs://", "file://")
READ_ROWS = 64               # rows per read task of a local source (a few seconds of decoding on one core)
NAME_COLUMNS = ("key", "__key__", "file_name", "fname", "filename", "id")
_IMAGE_SUFFIXES = ("jpg", "jpeg", "png", "webp", "tif", "tiff", "bmp", "gif")


@dataclass(frozen=True)
class RaySource:
    """What the build needs of a source on Ray."""

    source: Source                               # the driver's rows (scripts.sources.Source)
    keys: np.ndarray                             # uint64 source key of each source row
    read: Callable[[np.ndarray], Any]            # sorted uint64 keys -> ray.data.Dataset of those rows
    kind: str                                    # for messages: "image folder", "parquet shards", ...
    missing_reason: str = "file not found"       # listed for a row the readers no longer find


def is_remote(source: str) -> bool:
    return source.startswith(REMOTE_SCHEMES)


def open_ray_source(source: str) -> RaySource:
    """Open SOURCE for the Ray engine; BuildError with one readable sentence otherwise."""
    if not is_remote(source):
        return _local(source)
    fs, base, infos = _list(source)
    files = list(infos)
    suffixes = {f.rsplit(".", 1)[-1].lower() for f in files if "." in f.rsplit("/", 1)[-1]}
    if "parquet" in suffixes:
        return _parquet(source, fs, [f for f in files if f.lower().endswith(".parquet")])
    if "tar" in suffixes:
        return _webdataset(source, fs, [f for f in files if f.lower().endswith(".tar")])
    return _image_files(source, fs, base, infos)


def path_keys(names: Sequence[str]) -> np.ndarray:
    """uint64 keys of strings (blake2b, 8 bytes): a file path, or a shard path and a name."""
    return np.array([int.from_bytes(hashlib.blake2b(n.encode("utf-8"), digest_size=8).digest(), "little")
                     for n in names], dtype=np.uint64)


def _shard_keys(shards: Sequence[str], names: Sequence[str]) -> np.ndarray:
    return path_keys([f"{s}\0{n}" for s, n in zip(shards, names)])


# --- local sources: the local engine's ----------------------------------------------------------

def _local(source: str) -> RaySource:
    src = open_source(source)
    images = src.dataset.select_columns([src.image_column]).with_format(None)
    keys = np.arange(len(src.dataset), dtype=np.uint64)

    def read(todo: np.ndarray) -> Any:
        import ray.data

        todo = np.asarray(todo, dtype=np.int64)
        blocks = max(1, math.ceil(len(todo) / READ_ROWS))
        return ray.data.range(len(todo), override_num_blocks=blocks).map_batches(
            _read_rows, fn_kwargs={"images": images, "column": src.image_column, "todo": todo},
            batch_size=None)

    return RaySource(source=src, keys=keys, read=read, kind="local")


def _read_rows(batch: dict[str, np.ndarray], images: Any, column: str, todo: np.ndarray) -> dict[str, np.ndarray]:
    rows = todo[np.asarray(batch["id"], dtype=np.int64)]
    items = images[rows.tolist()][column] if len(rows) else []
    return _rows(rows.astype(np.uint64), [item.get("bytes") if isinstance(item, dict) else None for item in items],
                 [item.get("path") if isinstance(item, dict) else item for item in items])


def _rows(keys: np.ndarray, data: Sequence[Any], paths: Sequence[Any]) -> Any:
    """The decode tasks' input as an Arrow table: typed columns, so a column of missing bytes stays
    binary nulls instead of becoming a float column of NaN."""
    import pyarrow as pa

    return pa.table({"key": pa.array(keys, pa.uint64()), "bytes": pa.array(list(data), pa.binary()),
                     "path": pa.array([None if p is None else str(p) for p in paths], pa.string())})


# --- object storage ---------------------------------------------------------------------------

def _list(url: str) -> tuple[Any, str, dict[str, Any]]:
    """(pyarrow filesystem, folder path, every file under it by path, sorted, with its size and time)
    for a folder URL: one listing, no request per file."""
    import pyarrow.fs as pafs

    try:
        fs, base = pafs.FileSystem.from_uri(url)
        infos = fs.get_file_info(pafs.FileSelector(base, recursive=True))
    except (OSError, ValueError, TypeError) as exc:   # pyarrow: ArrowInvalid and kin are ValueErrors
        raise BuildError(f"Could not list {url}: {' '.join(str(exc).split())}") from None
    files = {i.path: i for i in sorted(infos, key=lambda i: i.path) if i.type == pafs.FileType.File
             and not i.path.rsplit("/", 1)[-1].startswith(".")}
    if not files:
        raise BuildError(f"Source {url} holds no files (or does not exist).")
    return fs, base, files


def _url(source: str, path: str) -> str:
    """A filesystem path back as a URL with the source's scheme (what fsspec and datasets open)."""
    scheme = source.split("://", 1)[0]
    return f"{scheme}://{path}"


def _local_path_for_datasets(source: str, path: str) -> str:
    """datasets' builders take plain local paths; remote ones as URLs."""
    return path if source.startswith("file://") else _url(source, path)


def _image_files(source: str, fs: Any, base: str, files: dict[str, Any]) -> RaySource:
    import datasets
    import pyarrow as pa
    from datasets.packaged_modules.imagefolder.imagefolder import ImageFolder

    extensions = {e.lower() for e in ImageFolder.EXTENSIONS}
    images = [f for f in files if "." + f.rsplit(".", 1)[-1].lower() in extensions]
    if not images:
        raise BuildError(f"Source {source} has no image files, Parquet or WebDataset shards "
                         f"({len(files)} other files).")
    column = pa.StructArray.from_arrays([pa.nulls(len(images), pa.binary()),
                                         pa.array([_url(source, p) for p in images], pa.string())],
                                        names=["bytes", "path"])
    dataset = datasets.Dataset(pa.table({"image": column})).cast_column("image", datasets.Image(decode=False))
    keys = path_keys(images)
    # The listing's sizes and times are the rows' identities (an incremental build compares them):
    # the driver reads no image to fingerprint it.
    stats = (np.array([files[p].size for p in images], np.int64),
             np.array([files[p].mtime_ns or 0 for p in images], np.int64))

    def read(todo: np.ndarray) -> Any:
        import ray.data

        wanted = [p for p, take in zip(images, np.isin(keys, todo)) if take]
        return ray.data.read_binary_files(wanted, filesystem=fs, include_paths=True,
                                          ignore_missing_paths=True).map_batches(_keyed_files, batch_size=None)

    return RaySource(source=Source(dataset=dataset, image_column="image", description=source, stats=stats),
                     keys=keys, read=read, kind="image folder")


def _keyed_files(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    paths = [str(p) for p in batch["path"]]
    return _rows(path_keys(paths), list(batch["bytes"]), paths)


def _parquet(source: str, fs: Any, shards: list[str]) -> RaySource:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    src = _load_with_datasets("parquet", source, shards)
    table = src.dataset.with_format("arrow")
    column = src.image_column
    name_column = _name_column(src, table)
    names = (pc.struct_field(table[column], "path") if name_column is None else table[name_column]).to_pylist()
    counts = [pq.ParquetFile(fs.open_input_file(s)).metadata.num_rows for s in shards]
    if sum(counts) != len(names):
        raise BuildError(f"Source {source}: datasets read {len(names)} rows from the Parquet shards, their "
                         f"footers say {sum(counts)}.")
    shard_of = np.repeat(np.arange(len(shards)), counts)
    keys = _unique_keys(source, [shards[s] for s in shard_of], names)

    def read(todo: np.ndarray) -> Any:
        import ray.data

        columns = [column] + ([name_column] if name_column else [])
        return ray.data.read_parquet(shards, filesystem=fs, columns=columns, include_paths=True).map_batches(
            _keyed_parquet, fn_kwargs={"column": column, "name_column": name_column, "todo": todo},
            batch_format="pyarrow", batch_size=None)

    return RaySource(source=src, keys=keys, read=read,
                     kind="parquet shards", missing_reason="not found in its shard")


def _keyed_parquet(table: Any, column: str, name_column: str | None, todo: np.ndarray) -> dict[str, np.ndarray]:
    import pyarrow as pa
    import pyarrow.compute as pc

    images = table[column]
    if pa.types.is_struct(images.type):
        data, paths = pc.struct_field(images, "bytes").to_pylist(), pc.struct_field(images, "path").to_pylist()
    else:
        data, paths = images.to_pylist(), [None] * len(table)
    names = paths if name_column is None else table[name_column].to_pylist()
    keys = _shard_keys(table["path"].to_pylist(), [str(n) for n in names])
    keep = np.isin(keys, todo)
    return _rows(keys[keep], _objects(data)[keep], _objects(paths)[keep])


def _webdataset(source: str, fs: Any, shards: list[str]) -> RaySource:
    src = _load_with_datasets("webdataset", source, shards)
    src = Source(dataset=_promote_json(src.dataset), image_column=src.image_column, description=source)
    table = src.dataset.with_format("arrow")
    urls = [_fs_path(u) for u in table["__url__"].to_pylist()]
    keys = _unique_keys(source, urls, table["__key__"].to_pylist())
    suffix = src.image_column

    def read(todo: np.ndarray) -> Any:
        import ray.data

        return ray.data.read_webdataset(shards, filesystem=fs, decoder=None).map_batches(
            _keyed_samples, fn_kwargs={"suffix": suffix, "todo": todo}, batch_size=None)

    return RaySource(source=src, keys=keys, read=read,
                     kind="webdataset shards", missing_reason="not found in its shard")


def _keyed_samples(batch: dict[str, np.ndarray], suffix: str, todo: np.ndarray) -> dict[str, np.ndarray]:
    keys = _shard_keys([_fs_path(str(u)) for u in batch["__url__"]], [str(k) for k in batch["__key__"]])
    data = list(batch[suffix]) if suffix in batch else [None] * len(keys)
    keep = np.isin(keys, todo)
    return _rows(keys[keep], _objects(data)[keep], _objects([f"{k}.{suffix}" for k in batch["__key__"]])[keep])


def _promote_json(dataset: Any) -> Any:
    """A sample's ``.json`` fields named like our metadata (year, title, book_id, ...) as columns of
    their own, where the local engine's metadata reader finds them (img2dataset writes such files)."""
    import datasets
    import pyarrow.compute as pc

    from scripts.metadata import ImageMetadata

    feature = dataset.features.get("json")
    if not isinstance(feature, dict):
        return dataset
    wanted = [f for f in feature if f in ImageMetadata.__dataclass_fields__ and f not in dataset.column_names]
    column = dataset.with_format("arrow")["json"] if wanted else None
    for name in wanted:
        kind = feature[name] if isinstance(feature[name], datasets.Value) else None
        dataset = dataset.add_column(name, pc.struct_field(column, name).to_pylist(), feature=kind)
    return dataset


def _load_with_datasets(builder: str, source: str, shards: list[str]) -> Source:
    """The shards as one `datasets.Dataset`, read by datasets' own builder (the driver's copy)."""
    import datasets

    from scripts.sources import _image_column

    try:
        dataset = datasets.load_dataset(builder, data_files=[_local_path_for_datasets(source, s) for s in shards],
                                        split="train")
    except Exception as exc:
        raise BuildError(f"Could not read the {builder} shards in {source}: {type(exc).__name__}: "
                         f"{' '.join(str(exc).split())}") from exc
    if not any(isinstance(f, datasets.Image) for f in dataset.features.values()):
        binary = [c for c, f in dataset.features.items()
                  if getattr(f, "dtype", None) == "binary" and c.lower() in ("image", "img", *_IMAGE_SUFFIXES)]
        if binary:
            dataset = dataset.cast_column(binary[0], datasets.Image())
    column = _image_column(dataset, source)
    if len(dataset) == 0:
        raise BuildError(f"Source {source} has no images.")
    return Source(dataset=dataset.cast_column(column, datasets.Image(decode=False)), image_column=column,
                  description=source)


def _name_column(src: Source, table: Any) -> str | None:
    """None when every image carries its own path (datasets' Image struct); else a key/name column."""
    import pyarrow.compute as pc

    paths = pc.struct_field(table[src.image_column], "path")
    if paths.null_count == 0:
        return None
    for name in NAME_COLUMNS:
        if name in src.dataset.column_names:
            return name
    raise BuildError(f"Source {src.description}: its Parquet rows need a name to be told apart (the image's "
                     f"path, or a column named {', '.join(NAME_COLUMNS)}).")


def _unique_keys(source: str, shards: Sequence[str], names: Sequence[Any]) -> np.ndarray:
    keys = _shard_keys(shards, [str(n) for n in names])
    if len(np.unique(keys)) != len(keys):
        raise BuildError(f"Source {source}: some rows of one shard share a name, so they cannot be told apart.")
    return keys


def _fs_path(url: str) -> str:
    """A URL or path as pyarrow's filesystems name it: the scheme dropped (s3://b/k -> b/k)."""
    return url.split("://", 1)[1] if "://" in url else url


def _objects(values: list) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out
