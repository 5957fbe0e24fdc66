"""The Ray engine's embed stage: the job's missing shards, from parts embedded on Ray.

Parts already in the work folder (an interrupted run's) are assembled first; only the rows no part
holds go to Ray. Each part a worker reports is read back by the driver at once and assembled into
the build's shards (scripts/ray_engine/assembly.py), which the rest of the build reads exactly as
it reads the local engine's.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

from scripts.progress import stage
from scripts.ray_engine.assembly import ShardAssembler, ShardWriter
from scripts.ray_engine.cluster import WorkerCount
from scripts.ray_engine.cluster import workers as plural_workers
from scripts.ray_engine.decoding import Cropper
from scripts.ray_engine.parts import PartsFolder
from scripts.ray_engine.pipeline import run_pipeline
from scripts.ray_engine.plan import WorkerPlan
from scripts.ray_engine.reading import RaySource
from scripts.ray_engine.worker import Embedder
from search_core.errors import BuildError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RayRun:
    """What the embed stage did on Ray."""

    embedded: int          # images embedded by this run
    resumed: int           # job rows found in shards or parts of an earlier run
    seconds: float
    workers: int           # workers that embedded (or were seen alive at once, if more)


def embed_shards(source: RaySource, rows: np.ndarray, *, shards: list[int], shard_size: int, write: ShardWriter,
                 parts: PartsFolder, plan: WorkerPlan, cropper: Cropper, model: str, precision: str,
                 batch_size: int, part_rows: int, dim: int, live: bool, embedder: type = Embedder) -> RayRun:
    """Write the `shards` (of `shard_size` entries of `rows`, source row numbers) through `write`."""
    started = time.perf_counter()
    rows = np.asarray(rows, dtype=np.int64)
    assembler = ShardAssembler(source.keys[rows], shard_size, shards, write, dim)
    for _, part in parts.parts():
        assembler.add(part)
    resumed = len(rows) - len(assembler.missing())
    from_parts = assembler.embedded
    if resumed:
        log.info("resuming: %d of %d images already embedded", resumed, len(rows))
    workers = 0
    with stage("embed", "image", live=live, total=len(rows), initial=resumed) as embedding:
        extra = [f"{resumed:,} resumed"] if resumed else []
        embedding.set_note("; ".join(extra))
        todo = np.sort(source.keys[rows[assembler.missing()]])
        if len(todo):
            def on_part(path: str, count: int) -> None:
                assembler.add(_read_reported(parts, path))
                embedding.advance(count)

            def on_count(count: WorkerCount) -> None:
                embedding.set_note("; ".join([str(count), *extra]))

            workers = run_pipeline(source, todo, parts, plan, cropper, model=model, precision=precision,
                                   batch_size=batch_size, part_rows=part_rows, on_part=on_part,
                                   on_count=on_count, embedder=embedder)
            embedding.set_note("; ".join([plural_workers(workers), *extra]))
        if not assembler.done:
            # Rows Ray's readers did not find: files removed since the scan (read_binary_files
            # drops them), or samples gone from a shard.
            log.warning("%d images were listed but not found when read", len(assembler.missing()))
            assembler.skip_missing(source.missing_reason)
    return RayRun(embedded=assembler.embedded - from_parts, resumed=resumed,
                  seconds=time.perf_counter() - started, workers=workers)


def _read_reported(parts: PartsFolder, path: str):
    try:
        return parts.read(path)
    except (OSError, ValueError, KeyError) as exc:
        raise BuildError(f"A worker wrote the part {path}, which this machine cannot read "
                         f"({type(exc).__name__}): on a cluster --work-dir must be storage every node "
                         "shares (s3://, gs:// or a shared file system).") from exc
