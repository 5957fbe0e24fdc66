"""`imagesearch build`: turn a SOURCE of images into a collection folder (search_core/layout.py).

Stages, with files between them so a crash costs little:
1. open the source and read every row's metadata; order rows by year;
2. embed in shards of SHARD_ROWS rows into one work folder beside OUT (``.OUT.build``); its
   state.json holds a key hashing the arguments that change embeddings, the source's file list
   and the row order, so a re-run with the same key skips the shards already written (whatever
   its --batch-size) and any other key starts the folder afresh (with --embeddings-column the
   source's own vectors are read and checked instead: scripts/precomputed.py);
3. build the FAISS index and tune it for image rows and for the shipped probe prompts encoded
   with the collection's model (scripts/indexing.py); group near-duplicates
   (scripts/grouping.py) and measure the weak-match scale (scripts/match_scale.py);
4. write the collection into a temporary folder beside OUT and rename it into place (an
   existing collection is moved aside first and deleted only once the new one is in place), so a
   reader never sees half a collection. A build killed part way through this is tidied up by
   the next one (see _clean_leftovers).

Two builds to the same OUT at once are not supported: they would share the work folder.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import datasets
import numpy as np

from scripts.gpu import select_embed_stream
from scripts.grouping import DUPLICATE_THRESHOLD, Grouping, check_threshold, find_duplicate_groups
from scripts.index_choice import resolve_index_spec
from scripts.indexing import build_index
from scripts.match_scale import match_scale, probe_vectors
from scripts.metadata import ImageMetadata, dataset_metadata, year_order
from scripts.precomputed import read_vectors
from scripts.progress import Stage, live_bars, quiet_libraries, stage
from scripts.sources import Source, open_source, source_signature
from search_core import layout
from search_core.encoder import DEFAULT_MODEL, Encoder, resolve_device
from search_core.errors import BuildError
from search_core.folders import replace_folder
from search_core.integrity import file_checksums
from search_core.layout import DuplicateInfo, IndexInfo, Manifest, MatchScale

log = logging.getLogger(__name__)

BATCH_SIZE = {"cpu": 32, "cuda": 256}      # measured best per device (anchors/)
# Rows per shard, what a crash can cost at most (about 40 s on a CPU, seconds on a GPU). Fixed,
# not a number of batches, so a retry with a smaller --batch-size (after running out of GPU
# memory) still resumes.
SHARD_ROWS = 2048
STATE = "state.json"


@dataclass(frozen=True)
class BuildSummary:
    """What a build did; the CLI prints it."""

    out: Path
    rows: int                                   # images in the collection
    skipped: list[tuple[str, str]]              # (file name, reason) not embedded
    seconds: float                              # whole build, wall clock
    images_per_second: float                    # embedding rate of this run
    index: IndexInfo
    embedded: int = 0                           # images embedded by this run (not resumed)
    resumed: int = 0                            # source rows taken from an earlier run's shards
    device: str = "cpu"
    precision: str = "fp32"
    pushed_to: str | None = None
    source_rows: int = 0
    duplicates: DuplicateInfo | None = None     # near-duplicate groups found
    grouping_seconds: float = 0.0
    match_scale: MatchScale | None = None
    embeddings_column: str | None = None        # vectors read from this source column, not embedded


@quiet_libraries()
def build_collection(source: str, out: Path, *, model: str = DEFAULT_MODEL, batch_size: int | None = None,
                     device: str = "auto", index: str = "auto", precision: str = "auto",
                     push_to_hub: str | None = None, progress: bool = True,
                     shard_size: int | None = None, duplicate_threshold: float = DUPLICATE_THRESHOLD,
                     embeddings_column: str | None = None, encoder: Encoder | None = None) -> BuildSummary:
    """Build (or rebuild) the collection at `out` from `source`. Raises BuildError.

    progress: live bars on a terminal; otherwise, and with progress=False, one line per stage.
    embeddings_column: use the source's vectors in that column as they are (checked; no image is
    embedded, rows need no image); `model` must be the model that made them, as text queries are
    encoded with it. encoder: an already loaded model to use instead of loading `model` (the
    benchmarks' synthetic one, say); `model` is still the name recorded.
    """
    started = time.perf_counter()
    live = live_bars(progress)
    if batch_size is not None and batch_size < 1:
        raise BuildError("--batch-size must be at least 1.")
    duplicate_threshold = check_threshold(duplicate_threshold)
    out = Path(out).expanduser().absolute()
    _clean_leftovers(out)
    _check_out(out)

    with stage("scan", "image", live=live) as scan:
        src = open_source(source, embeddings_column=embeddings_column)
        meta = dataset_metadata(src.dataset, src.image_column)
        order = year_order(meta)
        scan.advance(len(order))

    # Encoder.load resolves 'auto' (fp16 on CUDA, the fastest checked path on a CPU); the
    # manifest records what it chose.
    encoder = encoder or _load_encoder(model, resolve_device(device), precision)
    device, precision = encoder.device, encoder.precision
    work = _work_folder(out)
    embedded = resumed = 0
    embed_seconds = 0.0
    if embeddings_column is not None:
        vectors = read_vectors(src.dataset, embeddings_column, dim=encoder.dim, model=model, order=order,
                               names=[m.file_name for m in meta], source=source)
        positions, skipped, precision = list(range(len(order))), [], "source"
    else:
        batch_size = batch_size or BATCH_SIZE["cuda" if device.startswith("cuda") else "cpu"]
        shard_size = shard_size or SHARD_ROWS
        key = _resume_key(src, order, model=model, precision=precision, shard_size=shard_size)

        embed_started = time.perf_counter()
        embedded, resumed = _embed_shards(encoder, src, order, work, key=key, batch_size=batch_size,
                                          shard_size=shard_size, live=live)
        embed_seconds = time.perf_counter() - embed_started

        positions, vectors, skipped_positions = _gather(work, n_shards=_n_shards(len(order), shard_size))
        skipped = [(meta[order[p]].file_name, reason) for p, reason in skipped_positions]
        if len(positions) == 0:
            raise BuildError(f"None of the {len(order)} images in {source} could be read "
                             f"(first problem: {skipped[0][0]}: {skipped[0][1]}).")

    probes = probe_vectors(encoder)     # the shipped probe prompts: text queries for tuning and the scale
    spec = resolve_index_spec(index, len(vectors), vectors.shape[1])
    with stage("index", "vector", live=live, total=len(vectors)) as indexing:
        faiss_index, info = build_index(vectors, spec, text_queries=probes)
        indexing.advance(len(vectors))
        indexing.note = info.spec if info.recall_at_10 is None else (
            f"{info.spec}, recall@10 {info.recall_at_10:.3f} images, {info.text_recall_at_10:.3f} prompts")
    with stage("group", "vector", live=live, total=len(vectors)) as grouping_stage:
        grouping = find_duplicate_groups(vectors, duplicate_threshold)
        scale = match_scale(vectors, probes)
        grouping_stage.advance(len(vectors))
        grouping_stage.note = f"{grouping.info.grouped_rows} near-duplicates"

    rows = [order[p] for p in positions]
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    try:
        with stage("write", "image", live=live, total=len(rows)) as writing:
            _write_collection(tmp, src, [meta[r] for r in rows], rows, vectors, faiss_index, info,
                              skipped, encoder=encoder, model=model, precision=precision, stage=writing,
                              grouping=grouping, scale=scale)
            replace_folder(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(work, ignore_errors=True)

    pushed = None
    if push_to_hub:
        from scripts.hub import push_collection

        push_collection(out, push_to_hub)
        pushed = push_to_hub

    return BuildSummary(
        out=out, rows=len(rows), skipped=skipped, seconds=time.perf_counter() - started,
        images_per_second=embedded / embed_seconds if embedded and embed_seconds > 0 else 0.0,
        index=info, embedded=embedded, resumed=resumed, device=device, precision=precision,
        pushed_to=pushed, source_rows=len(order), duplicates=grouping.info, grouping_seconds=grouping.seconds,
        match_scale=scale, embeddings_column=embeddings_column,
    )


# --- Stage helpers --------------------------------------------------------------------------

def _check_out(out: Path) -> None:
    """Never replace something that is not a collection: that would lose the user's files."""
    if out.exists() and not out.is_dir():
        raise BuildError(f"Output {out} exists and is a file, not a collection folder.")
    if out.is_dir() and any(out.iterdir()) and not _is_collection(out):
        raise BuildError(f"Output folder {out} is not empty and is not a collection (no {layout.MANIFEST} "
                         f"of format {layout.FORMAT_VERSION} beside {layout.DATASET_DIR}/ or {layout.INDEX}); "
                         "refusing to replace it. Choose another --out.")
    if not out.parent.is_dir():
        raise BuildError(f"The folder {out.parent} for the output does not exist.")


def _is_collection(folder: Path) -> bool:
    """Whether `folder` is a collection this version wrote, so replacing it loses nothing else.

    A manifest.json alone is not enough: plenty of other things (web apps, browser extensions)
    have one, and replacing their folder would delete the user's work.
    """
    try:
        manifest = Manifest.read(folder)
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return False
    return manifest.format_version == layout.FORMAT_VERSION and (
        (folder / layout.DATASET_DIR).is_dir() or (folder / layout.INDEX).is_file())


def _work_folder(out: Path) -> Path:
    return out.parent / f".{out.name}.build"


def _leftovers(out: Path, kind: str) -> list[Path]:
    """Folders beside OUT named ``.OUT.<kind>-*``, newest first (prefix match: OUT may hold glob characters)."""
    prefix = f".{out.name}.{kind}-"
    found = [p for p in out.parent.iterdir() if p.name.startswith(prefix)]
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)


def _clean_leftovers(out: Path) -> None:
    """Undo what a killed build left beside OUT, before anything else looks at OUT.

    A kill between replace_folder's two renames leaves no OUT and the old collection in
    ``.OUT.old-<pid>``: it is renamed back (the newest, should there be several). With a
    collection at OUT, other ``.OUT.old-*`` folders are collections already replaced. Those,
    ``.OUT.tmp-*`` (half-written collections) and ``.OUT.build-<key>`` (work folders of earlier
    versions, one per key, never reused now) are deleted, as the killed build would have done.
    """
    if not out.parent.is_dir():
        return
    olds = _leftovers(out, "old")
    if olds and not out.exists():
        log.warning("restoring %s from %s, left there by a build that was stopped while replacing it",
                    out, olds[0].name)
        os.rename(olds.pop(0), out)
    stale = _leftovers(out, "tmp") + _leftovers(out, "build")
    if out.is_dir() and _is_collection(out):
        stale += olds
    for stale_folder in stale:
        log.info("removing %s, left by an earlier build that was stopped", stale_folder)
        shutil.rmtree(stale_folder, ignore_errors=True)


def _load_encoder(model: str, device: str, precision: str) -> Encoder:
    try:
        encoder = Encoder.load(model, device=device, precision=precision)
    except BuildError as exc:
        # Hub errors run to several lines of advice; the user needs the first one.
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unknown error"
        if not first.startswith("Could not load model"):
            raise   # a bad precision/device choice: already one clear sentence
        raise BuildError(f"{first.rstrip('.')} (not a local model folder, and not available from the Hub "
                         "or its cache).") from exc
    return encoder


def _resume_key(src: Source, order: list[int], **args: Any) -> str:
    """Hash of what decides the shards: arguments, the source's file list and the row order.

    Shards store positions in `order` (the year-sorted source rows), so the order is part of the
    key: should a year column or the year parsing change between runs, old shards would
    otherwise put embeddings on the wrong rows, silently.
    """
    payload = json.dumps({"source": src.description, **args}, sort_keys=True)
    digest = hashlib.sha256((payload + source_signature(src.dataset, src.image_column)).encode())
    digest.update(np.asarray(order, dtype=np.int64).tobytes())
    return digest.hexdigest()


def _open_work(work: Path, key: str, rows: int, shard_size: int) -> None:
    """Make `work` hold only shards of `key`: shards of any other key (state.json) are deleted.

    One work folder per OUT bounds the disk a series of interrupted builds can fill (about
    2 GB per million rows) to one build's worth.
    """
    state = work / STATE
    try:
        same = json.loads(state.read_text(encoding="utf-8"))["key"] == key
    except (OSError, ValueError, KeyError, TypeError):
        same = False
    if same:
        return
    if work.exists():
        log.info("discarding the shards in %s: another source, order or settings wrote them", work)
        shutil.rmtree(work)
    work.mkdir(parents=True)
    _atomic_write_bytes(state, json.dumps({"key": key, "rows": rows, "shard_size": shard_size}).encode())


def _n_shards(n: int, shard_size: int) -> int:
    return (n + shard_size - 1) // shard_size


def _shard_path(work: Path, shard: int) -> Path:
    return work / f"shard_{shard:05d}.npz"


def _embed_shards(encoder: Encoder, src: Source, order: list[int], work: Path, *, key: str,
                  batch_size: int, shard_size: int, live: bool) -> tuple[int, int]:
    """Embed every shard not already in `work`; returns (images embedded now, rows resumed)."""
    _open_work(work, key, len(order), shard_size)
    n = len(order)
    todo = [s for s in range(_n_shards(n, shard_size)) if not _shard_path(work, s).exists()]
    resumed = n - sum(min(shard_size, n - s * shard_size) for s in todo)
    if resumed:
        log.info("resuming: %d of %d images already embedded in %s", resumed, n, work)

    images = src.dataset.select_columns([src.image_column]).with_format(None)

    def batches() -> Iterator[tuple[list[int], Any]]:
        for s in todo:
            for start in range(s * shard_size, min(n, (s + 1) * shard_size), batch_size):
                positions = list(range(start, min(n, start + batch_size, (s + 1) * shard_size)))
                rows = [order[p] for p in positions]
                yield positions, (lambda rows=rows: images[rows][src.image_column])

    workers = 1 if encoder.device == "cpu" else min(16, os.cpu_count() or 1)
    embedded = 0
    current: dict[int, list] = {}
    # The one choice of decoder: nvJPEG on the GPU where the build runs on CUDA and torchvision
    # allows it (scripts/gpu), else Pillow in threads (scripts/embedding); same batches either way.
    stream = select_embed_stream(encoder)
    with stage("embed", "image", live=live, total=n, initial=resumed) as embedding:
        if resumed:
            embedding.note = f"{resumed:,} resumed"
        for batch in stream(encoder, batches(), workers=workers):
            first = (batch.positions or [p for p, _ in batch.skipped])[0]
            shard = first // shard_size
            current.setdefault(shard, []).append(batch)
            embedded += len(batch.positions)
            embedding.advance(len(batch.positions) + len(batch.skipped))
            last = max(batch.positions + [p for p, _ in batch.skipped])
            if last == min(n, (shard + 1) * shard_size) - 1:
                _write_shard(_shard_path(work, shard), current.pop(shard))
    return embedded, resumed


def _write_shard(path: Path, batches: list) -> None:
    vectors = [b.vectors for b in batches if len(b.positions)]
    dim = vectors[0].shape[1] if vectors else 0
    skipped = [s for b in batches for s in b.skipped]
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        np.savez(
            f,
            positions=np.array([p for b in batches for p in b.positions], dtype=np.int64),
            vectors=np.concatenate(vectors) if vectors else np.zeros((0, dim), np.float32),
            skipped_positions=np.array([p for p, _ in skipped], dtype=np.int64),
            skipped_reasons=np.array([r for _, r in skipped], dtype=np.str_),
        )
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _gather(work: Path, n_shards: int) -> tuple[list[int], np.ndarray, list[tuple[int, str]]]:
    positions: list[int] = []
    vectors: list[np.ndarray] = []
    skipped: list[tuple[int, str]] = []
    for s in range(n_shards):
        with np.load(_shard_path(work, s)) as shard:
            positions.extend(shard["positions"].tolist())
            if len(shard["positions"]):
                vectors.append(shard["vectors"])
            skipped.extend(zip(shard["skipped_positions"].tolist(), shard["skipped_reasons"].tolist()))
    matrix = np.concatenate(vectors).astype(np.float32, copy=False) if vectors else np.zeros((0, 0), np.float32)
    return positions, matrix, skipped


def _write_collection(tmp: Path, src: Source, meta: list[ImageMetadata], rows: list[int], vectors: np.ndarray,
                      faiss_index: Any, info: IndexInfo, skipped: list[tuple[str, str]], *,
                      encoder: Encoder, model: str, precision: str, stage: Stage, grouping: Grouping,
                      scale: MatchScale | None) -> None:
    import faiss

    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    _write_dataset(tmp, src, meta, rows, on_rows=stage.advance)
    np.save(tmp / layout.EMBEDDINGS, vectors)
    faiss.write_index(faiss_index, str(tmp / layout.INDEX))
    np.save(tmp / layout.GROUPS, grouping.group_of)
    with open(tmp / layout.SKIPPED, "w", encoding="utf-8") as f:
        f.writelines(json.dumps({"file": name, "reason": reason}) + "\n" for name, reason in skipped)
    probe = encoder.encode_text([layout.MODEL_PROBE_TEXT])[0]
    manifest = Manifest(
        format_version=layout.FORMAT_VERSION, model=model, embedding_dim=int(vectors.shape[1]),
        metric="ip", rows=len(rows), index=info, source=src.description,
        built_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        model_probe=[float(x) for x in probe], precision=precision, skipped=len(skipped),
        checksums=file_checksums(tmp), duplicates=grouping.info, match_scale=scale,
        embeddings_column=src.embeddings_column,
    )
    manifest.write(tmp)


def _write_dataset(tmp: Path, src: Source, meta: list[ImageMetadata], rows: list[int],
                   on_rows: Callable[[int], None]) -> None:
    """Rows in collection order, metadata columns, other scalar source columns, image bytes inside.

    A source without images (vectors from an embeddings column) gets an image column of nulls.
    """
    keep = [c for c, f in src.dataset.features.items()
            if c != src.image_column and c not in layout.METADATA_COLUMNS and c != "image"
            and isinstance(f, (datasets.Value, datasets.ClassLabel))]
    if src.image_column is None:
        images = datasets.Dataset.from_dict({"image": [None] * len(rows)},
                                            features=datasets.Features({"image": datasets.Image()}))
        base = images if not keep else datasets.concatenate_datasets(
            [images, src.dataset.select_columns(keep).select(rows)], axis=1)
    else:
        base = src.dataset.select_columns([src.image_column, *keep]).select(rows)
    if src.image_column not in (None, "image"):
        base = base.rename_column(src.image_column, "image")
    meta_features = datasets.Features({
        "file_name": datasets.Value("string"), "year": datasets.Value("int32"),
        "title": datasets.Value("string"), "book_id": datasets.Value("string"),
        "volume": datasets.Value("int32"), "page": datasets.Value("int32"),
        "image_number": datasets.Value("int32"),
    })
    meta_ds = datasets.Dataset.from_dict({c: [getattr(m, c) for m in meta] for c in layout.METADATA_COLUMNS},
                                         features=meta_features)
    merged = datasets.concatenate_datasets([meta_ds, base], axis=1).cast_column("image", datasets.Image())
    # What Dataset.push_to_hub does to make a shard self-contained: read each path into bytes.
    cache = tmp / "_cache"
    cache.mkdir()
    fmt = merged.format

    def embed_storage(table: Any) -> Any:
        on_rows(len(table))
        return datasets.table.embed_table_storage(table)

    embedded = merged.with_format("arrow").map(
        embed_storage, batched=True, cache_file_name=str(cache / "embedded.arrow"),
        new_fingerprint=f"embedded-{len(rows)}",   # the progress callback cannot be hashed; nothing reuses this
    ).with_format(**{k: v for k, v in fmt.items() if k in ("type", "columns", "output_all_columns")})
    embedded.save_to_disk(str(tmp / layout.DATASET_DIR))
    del embedded, merged
    shutil.rmtree(cache)


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
