"""The Ray Data pipeline of the embed stage: read, decode in tasks, embed in an actor pool.

    source rows ──read──▶ {key, bytes, path} ──decode tasks──▶ {key, uint8 crop, reason}
                ──actor pool (the model once per actor)──▶ a part file per batch ──▶ one row of counts

The driver receives only the counts row of each part (its path, rows, worker): the vectors go
from the workers to the work folder. Ray Data streams, so parts appear while later rows are still
being read, and its backpressure bounds what waits in the object store.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from scripts.ray_engine.cluster import WorkerCount, WorkerCounter
from scripts.ray_engine.decoding import Cropper, decode_batch
from scripts.ray_engine.parts import PartsFolder
from scripts.ray_engine.plan import DECODE_CPUS, DECODE_MEMORY, WorkerPlan
from scripts.ray_engine.reading import RaySource
from scripts.ray_engine.worker import Embedder
from search_core.errors import BuildError

log = logging.getLogger(__name__)

# Rows per part: one actor call, and at most what a dead worker redoes. On CPUs a part is a few
# seconds of one model (ViT-B/32: 10-20 images/s on 2 cores): 256 handed a 256-image job to one
# worker while the others idled (bench_ray); on a GPU, about a quarter of a second.
PART_ROWS = {"cpu": 64, "cuda": 1024}
DECODE_ROWS = 64                         # rows a decode task turns into crops at once
COUNT_EVERY = 1.0                        # seconds between two looks at the actor table


def resolve_worker_precision(plan: WorkerPlan, precision: str) -> str:
    """The image precision the workers will use, decided where they run (a task with a worker's
    resources): 'auto' is fp16 on a GPU, else what that machine's CPU does best."""
    import ray

    def resolve(requested: str, device: str) -> str:
        from search_core.encoder import resolve_device, resolve_precision

        return resolve_precision(requested, resolve_device(device))[0]

    task = ray.remote(resolve).options(num_cpus=min(plan.cpus_per_worker, 1.0),
                                       num_gpus=plan.gpus_per_worker or None, max_retries=0)
    try:
        return ray.get(task.remote(precision, plan.device))
    except Exception as exc:
        raise BuildError(ray_error(exc)) from exc


def run_pipeline(source: RaySource, todo: np.ndarray, parts: PartsFolder, plan: WorkerPlan, cropper: Cropper, *,
                 model: str, precision: str, batch_size: int, part_rows: int,
                 on_part: Callable[[str, int], None], on_count: Callable[[WorkerCount], None] | None = None,
                 embedder: type = Embedder) -> int:
    """Embed the rows whose keys are in `todo` (sorted uint64) into parts; `on_part(path, rows)` as
    each part is reported. Returns how many workers did the work (or were seen alive at once)."""
    from ray.data import ActorPoolStrategy

    quiet_ray_data()
    dataset = source.read(todo).map_batches(
        decode_batch, fn_kwargs={"cropper": cropper}, batch_size=DECODE_ROWS, num_cpus=DECODE_CPUS,
        memory=DECODE_MEMORY,
    ).map_batches(
        embedder, batch_size=part_rows, num_cpus=plan.cpus_per_worker, num_gpus=plan.gpus_per_worker or None,
        compute=ActorPoolStrategy(min_size=1, max_size=plan.workers, initial_size=max(1, plan.workers_that_fit)),
        fn_constructor_kwargs={"model": model, "device": plan.device, "precision": precision,
                               "threads": plan.threads, "batch_size": batch_size, "work_dir": parts.url},
    )
    reporting: set[str] = set()
    try:
        with WorkerCounter(embedder.__name__, every=COUNT_EVERY, on_count=on_count).running() as counter:
            for counts in dataset.iter_batches(batch_size=None, batch_format="numpy"):
                for path, rows, worker in zip(counts["part"], counts["rows"], counts["worker"]):
                    reporting.add(str(worker))
                    on_part(str(path), int(rows))
    except BuildError:
        raise
    except Exception as exc:   # Ray's own errors: a worker that failed past its retries, a lost node
        raise BuildError(f"Embedding on Ray failed: {ray_error(exc)}") from exc
    return max(counter.busiest.alive if counter.busiest else 0, len(reporting))


def quiet_ray_data() -> None:
    """Our stage line instead of Ray Data's progress bars, execution banners and stats dumps."""
    from ray.data import DataContext

    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    ctx.enable_auto_log_stats = False
    # An I/O error in a worker (writing a part to object storage, say) is retried as a worker that
    # died is; a worker that cannot write at all fails as it starts (PartsFolder.check_writable).
    ctx.actor_task_retry_on_errors = [OSError]
    logging.getLogger("ray.data").setLevel(logging.ERROR)


def ray_error(exc: BaseException) -> str:
    """The innermost readable reason of a Ray error, on one line (no Ray traceback)."""
    for _ in range(10):
        inner = getattr(exc, "cause", None) or exc.__cause__
        if not isinstance(inner, BaseException) or inner is exc:
            break
        exc = inner
    if isinstance(exc, BuildError):
        return " ".join(str(exc).split())
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__
