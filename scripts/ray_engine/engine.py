"""`RayEngine`: the build's embed stage on Ray, behind the same interface as the local engine.

The build (scripts/build.py) opens the source through the engine, asks it which device and
precision the embeddings will have (the workers', decided where they run), and hands it an
`EmbedJob`; the engine writes the job's shard files into job.work, exactly as the local engine
does, and everything after (gather, index, group, write) is the local engine's. The Ray
connection lasts the engine's `session()`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from scripts.engines import EmbedEngine, EmbedReport
from scripts.ray_engine.cluster import Cluster, check_reachable, ray_cluster, require_ray
from scripts.ray_engine.decoding import Cropper
from scripts.ray_engine.embed import embed_shards
from scripts.ray_engine.options import RayOptions
from scripts.ray_engine.parts import PartsFolder
from scripts.ray_engine.pipeline import PART_ROWS, resolve_worker_precision
from scripts.ray_engine.plan import WorkerPlan, check_worker_options, plan_workers
from scripts.ray_engine.reading import RaySource, open_ray_source
from search_core.errors import BuildError

if TYPE_CHECKING:
    from scripts.engines import EmbedJob
    from scripts.sources import Source
    from search_core.encoder import Encoder

log = logging.getLogger(__name__)

PARTS_FOLDER = "ray-parts"      # inside the build's work folder when --work-dir is not given


def parts_url(work_dir: str | None, work: Path) -> str:
    """Where the workers write their parts: inside the build's work folder, or a folder of this
    build's own inside --work-dir (named after the build's work folder, ``COLLECTION.build``), so
    that several collections can share one --work-dir and nothing else in it is ever removed."""
    if work_dir is None:
        return str(work / PARTS_FOLDER)
    return f"{work_dir.rstrip('/')}/{work.name.lstrip('.')}"


class RayEngine(EmbedEngine):
    name = "ray"

    def __init__(self, options: RayOptions | None = None) -> None:
        """Fails here, before the build scans anything, without the extra or when the cluster at
        --ray-address does not answer (one BuildError line each)."""
        self.options = options or RayOptions()
        o = self.options
        check_worker_options(o.workers, o.gpus_per_worker, o.cpus_per_worker)
        require_ray()
        if self.options.address is not None:
            check_reachable(self.options.address)
        self.cluster: Cluster | None = None
        self.plan: WorkerPlan | None = None
        self._sources: dict[int, RaySource] = {}

    @contextmanager
    def session(self) -> Iterator[None]:
        """Connected to Ray (a local instance started, or the cluster joined) while the build loads the
        model and embeds; disconnected (a local instance stopped) before it indexes, which then has
        the machine's cores and memory to itself."""
        with ray_cluster(self.options.address) as cluster:
            self.cluster = cluster
            o = self.options
            self.plan = plan_workers(cluster.cpus, cluster.gpus, workers=o.workers,
                                     gpus_per_worker=o.gpus_per_worker, cpus_per_worker=o.cpus_per_worker)
            if self.plan.workers_that_fit < self.plan.workers:
                log.warning("the Ray cluster fits %d of the %d workers asked for now", self.plan.workers_that_fit,
                            self.plan.workers)
            try:
                yield
            finally:
                self.cluster = self.plan = None

    def open_source(self, source: str, *, embeddings_column: str | None = None) -> Source:
        """The source as the build reads it (scripts.sources.Source), remembered with its Ray readers."""
        if embeddings_column is not None:
            raise BuildError("--embeddings-column embeds no image, so there is nothing to run on Ray: leave out "
                             "--engine ray.")
        opened = open_ray_source(source)
        self._sources[id(opened.source)] = opened
        return opened.source

    def driver_precision(self, precision: str) -> str:
        """The driver's model only encodes the build's probe prompts (text), on whatever device the
        driver has: fp32 runs everywhere, whichever precision the workers use."""
        return "fp32"

    def resolve(self, encoder: Encoder, precision: str) -> tuple[str, str]:
        """(device, image precision) of the embeddings: the workers', decided where they run."""
        plan = self._require_plan()
        return plan.device, resolve_worker_precision(plan, precision)

    def embed(self, job: EmbedJob, *, encoder: Encoder, live: bool) -> EmbedReport:
        from scripts.shards import missing_shards, open_work, shard_path, write_shard

        plan = self._require_plan()
        source = self._sources.get(id(job.source))
        if source is None:
            raise BuildError("The Ray engine embeds only a source it opened itself.")
        n = len(job.rows)
        open_work(job.work, job.key, rows=n, shard_size=job.shard_size)
        separate = self.options.work_dir is not None
        parts = PartsFolder(parts_url(self.options.work_dir, job.work))
        parts.claim(job.key)
        dim = encoder.dim

        def write(shard: int, indices: np.ndarray, vectors: np.ndarray, skipped: list[tuple[int, str]]) -> None:
            write_shard(shard_path(job.work, shard), job.rows[indices], vectors,
                        [(int(job.rows[i]), reason) for i, reason in skipped], dim)

        run = embed_shards(source, job.rows, shards=missing_shards(job.work, n, job.shard_size),
                           shard_size=job.shard_size, write=write, parts=parts, plan=plan,
                           cropper=Cropper.from_encoder(encoder), model=job.model, precision=job.precision,
                           batch_size=job.batch_size, part_rows=self.options.part_rows or PART_ROWS[
                               "cuda" if plan.device.startswith("cuda") else "cpu"],
                           dim=dim, live=live)
        if separate:
            parts.remove()      # every part is in a shard now; job.work (with its shards) goes with the build
        return EmbedReport(embedded=run.embedded, resumed=run.resumed, seconds=run.seconds)

    def _require_plan(self) -> WorkerPlan:
        if self.plan is None:
            raise RuntimeError("RayEngine used outside its session()")
        return self.plan
