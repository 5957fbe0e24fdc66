"""`imagesearch build`: turn a SOURCE of images into a collection folder (search_core/layout.py).

Stages, with files between them so a crash costs little and another engine can run the embedding:
1. scan: open the source, read every row's metadata and identity as Arrow columns
   (scripts/metadata.py, scripts/identity.py), order rows by year;
2. plan: against the collection already at OUT (same model and precision), which rows are new or
   changed and which old vectors are reused (scripts/incremental.py); --full, a first build or an
   old collection without files.arrow embed everything;
3. embed: an engine (scripts/engines) writes shards of the rows to embed into one work folder
   beside OUT (``.OUT.build``; scripts/shards.py); its state.json holds a key hashing the model,
   precision, shard size and the identities of the rows to embed, so a re-run with the same key
   skips the shards already written (whatever its --batch-size) and any other key starts the
   folder afresh (with --embeddings-column the source's own vectors are read and checked instead:
   scripts/precomputed.py);
4. gather: embeddings.npy written in place, memory-mapped, from reused rows and shards
   (scripts/gather.py);
5. index: build the FAISS index over all rows and tune it for image rows and for the shipped probe
   prompts (scripts/indexing.py); group near-duplicates (scripts/grouping.py) and measure the
   weak-match scale (scripts/match_scale.py) over all rows, so an update equals a clean build;
6. write: the rest of the collection into the temporary folder beside OUT (scripts/writer.py),
   renamed into place (an existing collection is moved aside first and deleted only once the new
   one is in place), so a reader never sees half a collection. A build killed part way through is
   tidied up by the next one (see _clean_leftovers).

Two builds to the same OUT at once are not supported: they would share the work folder.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from scripts.engines import EmbedJob, EmbedReport, get_engine
from scripts.gather import Gathered, gather, skipped_and_embedded
from scripts.grouping import DUPLICATE_THRESHOLD, check_threshold, find_duplicate_groups
from scripts.identity import digest, folder_identities, source_identities, unique_keys
from scripts.incremental import Plan, from_scratch, plan
from scripts.index_choice import resolve_index_spec
from scripts.indexing import build_index, projection_energy
from scripts.match_scale import match_scale, probe_vectors
from scripts.metadata import metadata_table, year_order
from scripts.precomputed import read_vectors
from scripts.progress import live_bars, quiet_libraries, stage
from scripts.ray_engine.options import RayOptions
from scripts.sources import Source, check_referencable
from scripts.writer import Contents, write_collection
from search_core import layout
from search_core.encoder import DEFAULT_MODEL, Encoder, resolve_device
from search_core.errors import BuildError
from search_core.folders import replace_folder
from search_core.layout import BuildChanges, DuplicateInfo, IndexInfo, Manifest, MatchScale
from search_core.provenance import DIGEST_BYTES, SCHEMA, read_files

log = logging.getLogger(__name__)

BATCH_SIZE = {"cpu": 32, "cuda": 256}      # measured best per device (anchors/)
# Rows per shard, what a crash can cost at most (about 40 s on a CPU, seconds on a GPU). Fixed,
# not a number of batches, so a retry with a smaller --batch-size (after running out of GPU
# memory) still resumes.
SHARD_ROWS = 2048


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
    resumed: int = 0                            # rows taken from an earlier run's shards
    device: str = "cpu"
    precision: str = "fp32"
    pushed_to: str | None = None
    source_rows: int = 0
    duplicates: DuplicateInfo | None = None     # near-duplicate groups found
    grouping_seconds: float = 0.0
    match_scale: MatchScale | None = None
    embeddings_column: str | None = None        # vectors read from this source column, not embedded
    changes: BuildChanges | None = None         # added / changed / removed / kept against the old collection
    storage: str = layout.STORAGE_COPY


@dataclass(frozen=True)
class OldCollection:
    """The collection an incremental build replaces: what it reuses from it."""

    path: Path
    manifest: Manifest
    files: pa.Table
    vectors: np.ndarray            # memory-mapped embeddings.npy


@quiet_libraries()
def build_collection(source: str, out: Path, *, model: str = DEFAULT_MODEL, batch_size: int | None = None,
                     device: str = "auto", index: str = "auto", precision: str = "auto",
                     push_to_hub: str | None = None, progress: bool = True, shard_size: int | None = None,
                     duplicate_threshold: float = DUPLICATE_THRESHOLD, embeddings_column: str | None = None,
                     encoder: Encoder | None = None, full: bool = False, images: str = layout.STORAGE_COPY,
                     engine: str = "local", ray: RayOptions | None = None) -> BuildSummary:
    """Build the collection at `out` from `source`, incrementally where a collection of the same model
    and precision is already there (unless `full`). Raises BuildError.

    progress: live bars on a terminal; otherwise, and with progress=False, one line per stage.
    embeddings_column: use the source's vectors in that column as they are (checked; no image is
    embedded, rows need no image; always a full build); `model` must be the model that made them,
    as text queries are encoded with it. encoder: an already loaded model to use instead of loading
    `model` (the benchmarks' synthetic one, say); `model` is still the name recorded.
    images: "copy" (bytes inside) or "reference" (paths under the source folder, or URLs).
    engine: who embeds (scripts/engines): "local", or "ray" with `ray` its options
    (scripts/ray_engine/options.py).
    """
    started = time.perf_counter()
    live = live_bars(progress)
    if batch_size is not None and batch_size < 1:
        raise BuildError("--batch-size must be at least 1.")
    if images not in layout.STORAGES:
        raise BuildError(f"--images must be one of {', '.join(layout.STORAGES)}, not {images!r}.")
    if push_to_hub:
        from scripts.hub import check_pushable

        check_pushable(images)
    duplicate_threshold = check_threshold(duplicate_threshold)
    embed_engine = get_engine(engine, ray=ray)
    out = Path(out).expanduser().absolute()
    _clean_leftovers(out)
    _check_out(out)

    with stage("scan", "image", live=live) as scan:
        src = embed_engine.open_source(source, embeddings_column=embeddings_column)
        if images == layout.STORAGE_REFERENCE:
            check_referencable(src)
        meta = metadata_table(src.dataset, src.image_column)
        order = year_order(meta.column("year"))
        identities = _identities(src, meta)
        scan.advance(len(order))

    old = None if full or embeddings_column is not None else _old_collection(out)
    if old is not None and precision == "auto":
        precision = old.manifest.precision     # an update embeds as the collection was embedded
    # The engine's session (a Ray connection) lasts from the model's loading to the end of the embed
    # stage.
    with embed_engine.session():
        # Encoder.load resolves 'auto' (fp16 on CUDA, the fastest checked path on a CPU); the
        # manifest records what it chose.
        encoder = encoder or _load_encoder(model, resolve_device(device),
                                           embed_engine.driver_precision(precision))
        device, precision = embed_engine.resolve(encoder, precision)
        if old is not None:
            _check_same_model(old, model, precision, encoder)

        tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
        work = _work_folder(out)
        if embeddings_column is None:
            todo = (from_scratch(len(order)) if old is None
                    else plan(identities, old.files, _digest_reader(src)))
            shard_size = shard_size or SHARD_ROWS
            job = EmbedJob(source=src, rows=todo.embed, work=work, shard_size=shard_size, model=model,
                           device=device, precision=precision,
                           batch_size=batch_size or BATCH_SIZE["cuda" if device.startswith("cuda") else "cpu"],
                           key=_job_key(src, identities, todo, model=model, precision=precision,
                                        shard_size=shard_size))
            report = embed_engine.embed(job, encoder=encoder, live=live)
            _check_any_embedded(job, todo, meta, source)
        else:
            todo, report = from_scratch(len(order)), EmbedReport(embedded=0, resumed=0, seconds=0.0)
            precision = "source"

    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        if embeddings_column is None:
            gathered = gather(tmp / layout.EMBEDDINGS, order=order, reuse=todo.reuse,
                              old_vectors=None if old is None else old.vectors, work=job.work,
                              job_rows=len(job.rows), shard_size=job.shard_size, dim=encoder.dim)
        else:
            gathered = _precomputed(tmp / layout.EMBEDDINGS, src, meta, order, encoder.dim, model)
        vectors = gathered.vectors
        names = meta.column("file_name")
        skipped = [(names[r].as_py(), reason) for r, reason in gathered.skipped]
        changes = BuildChanges(incremental=old is not None, **todo.counts(gathered.embedded))

        probes = probe_vectors(encoder)     # the shipped probe prompts: text queries for tuning and the scale
        spec = resolve_index_spec(index, len(vectors), vectors.shape[1],
                                  energy=partial(projection_energy, vectors))
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

        contents = Contents(
            source=src, metadata=meta, identities=identities, rows=gathered.rows, reuse=todo.reuse,
            old=None if old is None else old.path, old_storage=None if old is None else old.manifest.storage,
            skipped=skipped, storage=images, image_root=src.root, index=faiss_index, index_info=info,
            grouping=grouping, scale=scale, model=model, precision=precision,
            model_probe=[float(x) for x in encoder.encode_text([layout.MODEL_PROBE_TEXT])[0]],
            changes=changes, started=started)
        with stage("write", "image", live=live, total=len(gathered.rows)) as writing:
            write_collection(tmp, out, contents, on_rows=writing.advance)
            rows = len(gathered.rows)
            del vectors, gathered, old, contents
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
        out=out, rows=rows, skipped=skipped, seconds=time.perf_counter() - started,
        images_per_second=report.embedded / report.seconds if report.embedded and report.seconds > 0 else 0.0,
        index=info, embedded=report.embedded, resumed=report.resumed, device=device, precision=precision,
        pushed_to=pushed, source_rows=len(order), duplicates=grouping.info, grouping_seconds=grouping.seconds,
        match_scale=scale, embeddings_column=embeddings_column, changes=changes, storage=images,
    )


# --- Scan and plan --------------------------------------------------------------------------

def _identities(src: Source, meta: pa.Table) -> pa.Table:
    """files.arrow's columns for every source row (scripts/identity.py): a listed folder's (local,
    or in object storage) from the stats taken while listing it; rows without images (an embeddings
    column) by file name only."""
    n = len(meta)
    if src.image_column is None:
        return pa.table({"key": unique_keys(meta.column("file_name")), "size": pa.nulls(n, pa.int64()),
                         "mtime_ns": pa.nulls(n, pa.int64()), "digest": pa.nulls(n, pa.binary(DIGEST_BYTES))},
                        schema=SCHEMA)
    images = src.dataset.with_format("arrow")[src.image_column]
    if src.stats is not None:
        paths = pc.struct_field(images.combine_chunks() if isinstance(images, pa.ChunkedArray) else images, "path")
        return folder_identities(paths, src.root, *src.stats)
    return source_identities(images, meta.column("file_name"), root=src.root)


def _old_collection(out: Path) -> OldCollection | None:
    """The collection at OUT to update, or None to build from scratch (none there, or one built
    before incremental builds); BuildError asking for --full when it cannot be updated."""
    if not _is_collection(out):
        return None
    manifest = Manifest.read(out)
    if manifest.embeddings_column is not None:
        raise BuildError(f"The collection at {out} holds the vectors of column {manifest.embeddings_column!r} of "
                         "its source, not vectors this build made: they are not mixed. Pass --full to embed "
                         "everything again.")
    try:
        files = read_files(out)
        vectors = np.load(out / layout.EMBEDDINGS, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise BuildError(f"The collection at {out} cannot be updated ({type(exc).__name__}: {exc}); "
                         "rebuild it from scratch with --full.") from exc
    if files is None:
        log.warning("%s was built before incremental builds (no %s): embedding every image again", out, layout.FILES)
        return None
    if len(files) != manifest.rows or vectors.shape != (manifest.rows, manifest.embedding_dim):
        raise BuildError(f"The collection at {out} is inconsistent ({len(files)} files, embeddings {vectors.shape}, "
                         f"{manifest.rows} rows); rebuild it from scratch with --full.")
    return OldCollection(path=out, manifest=manifest, files=files, vectors=vectors)


def _check_same_model(old: OldCollection, model: str, precision: str, encoder: Encoder) -> None:
    """Vectors of two models or precisions never share a collection: ask for --full instead."""
    m = old.manifest
    probe = encoder.encode_text([layout.MODEL_PROBE_TEXT])[0]
    stored = np.asarray(m.model_probe, dtype=np.float32)
    same_space = stored.shape == probe.shape and float(np.dot(stored, probe)) >= layout.MODEL_PROBE_MIN_COSINE
    if m.model != model or not same_space:
        raise BuildError(f"The collection at {old.path} was embedded with the model {m.model}, not {model}: their "
                         f"vectors cannot be mixed. Build with --model {m.model} to add to it, or pass --full "
                         "to embed everything again with the new model.")
    if m.precision != precision:
        raise BuildError(f"The collection at {old.path} was embedded at {m.precision}, and this build would embed at "
                         f"{precision}: vectors of two precisions are not mixed. Pass --precision {m.precision} "
                         "(on a device that supports it), or --full to embed everything again.")


def _digest_reader(src: Source):
    """read_digest(source row) for the incremental plan: a local file's bytes hashed now."""
    from scripts.decode import UnusableImage, read_bytes

    images = src.dataset.select_columns([src.image_column]).with_format(None)

    def read_digest(row: int) -> bytes | None:
        try:
            return digest(read_bytes(images[row][src.image_column]))
        except UnusableImage:
            return None

    return read_digest


def _job_key(src: Source, identities: pa.Table, todo: Plan, **args: Any) -> str:
    """Hash of what decides the shards: settings, the source, and the identities of the rows to embed.

    Shards name source rows; hashing those rows' identities (key, size, time, digest) means a row
    number that now names another file, or a file changed since, never gets an old vector.
    """
    hashed = hashlib.sha256(json.dumps({"source": src.description, **args}, sort_keys=True).encode())
    rows = pa.array(todo.embed)
    for name in ("key", "size", "mtime_ns", "digest"):
        column = identities.column(name).take(rows).combine_chunks()
        for buffer in column.buffers():
            if buffer is not None:
                hashed.update(memoryview(buffer))
    hashed.update(np.ascontiguousarray(todo.embed, dtype=np.int64).tobytes())
    return hashed.hexdigest()


def _check_any_embedded(job: EmbedJob, todo: Plan, meta: pa.Table, source: str) -> None:
    """BuildError naming the first problem when no row of the collection would be left."""
    if (todo.reuse >= 0).any():
        return
    embedded, skipped = skipped_and_embedded(job.work, len(job.rows), job.shard_size)
    if len(embedded) == 0:
        name = meta.column("file_name")[skipped[0][0]].as_py() if skipped else "?"
        reason = skipped[0][1] if skipped else "?"
        raise BuildError(f"None of the {len(job.rows)} images in {source} could be read "
                         f"(first problem: {name}: {reason}).")


def _precomputed(path: Path, src: Source, meta: pa.Table, order: np.ndarray, dim: int, model: str) -> Gathered:
    """The source's own vectors (--embeddings-column), checked and normalised, saved as embeddings.npy."""
    vectors = read_vectors(src.dataset, src.embeddings_column, dim=dim, model=model, order=order,
                           names=meta.column("file_name").to_pylist(), source=src.description)
    np.save(path, vectors)
    del vectors
    return Gathered(rows=order, embedded=np.arange(len(order), dtype=np.int64), skipped=[],
                    vectors=np.load(path, mmap_mode="r"))


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
