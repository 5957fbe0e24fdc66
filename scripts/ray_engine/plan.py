"""How many embedding workers to run, and with what, from the resources a Ray cluster reports.

Pure arithmetic on `ray.cluster_resources()` figures, so it is table-tested without Ray.

A worker is an actor holding the model once. Decoding runs in separate Ray tasks, one CPU each,
so a plan always leaves at least one CPU free for them: an actor pool that takes every CPU leaves
the decode tasks unscheduled, and Ray Data then waits forever for input that never comes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from search_core.errors import BuildError

DECODE_CPUS = 1.0            # per decode task (Pillow decode + resize, single-threaded)
# Memory a decode task reserves: a batch of large scans decoded at once. Also keeps Ray Data from
# fusing decoding into the workers (it fuses operators whose resources are equal), which would
# decode in the model's process, one batch after another.
DECODE_MEMORY = 512 * 2**20
CPU_WORKER_THREADS = 4       # default CPUs per model on a CPU-only cluster: ViT-B/32 gains little past 4 threads
GPU_WORKER_CPUS = 1.0        # default CPUs per model on a GPU: it only feeds the GPU; decoding is elsewhere


@dataclass(frozen=True)
class WorkerPlan:
    """Resources for the actor pool; `device` and `threads` are what each actor runs its model with."""

    workers: int
    cpus_per_worker: float
    gpus_per_worker: float
    cluster_cpus: float
    cluster_gpus: float

    @property
    def device(self) -> str:
        return "cuda" if self.gpus_per_worker > 0 else "cpu"

    @property
    def threads(self) -> int:
        """torch threads per actor: its CPU share, at least one."""
        return max(1, int(self.cpus_per_worker))

    @property
    def workers_that_fit(self) -> int:
        """Workers that fit at once beside one decode task (fewer than `workers` on a small cluster)."""
        by_cpu = math.floor((self.cluster_cpus - DECODE_CPUS) / self.cpus_per_worker + 1e-9)
        by_gpu = math.floor(self.cluster_gpus / self.gpus_per_worker + 1e-9) if self.gpus_per_worker else by_cpu
        return max(0, min(self.workers, by_cpu, by_gpu))


def check_worker_options(workers: int | None, gpus_per_worker: float | None, cpus_per_worker: float | None) -> None:
    """BuildError for a worker option no cluster can satisfy (checked before the build starts)."""
    if workers is not None and workers < 1:
        raise BuildError("--workers must be at least 1.")
    if gpus_per_worker is not None and gpus_per_worker < 0:
        raise BuildError("--gpus-per-worker cannot be negative.")
    if cpus_per_worker is not None and cpus_per_worker <= 0:
        raise BuildError("--cpus-per-worker must be more than 0 (fractions such as 0.5 are allowed).")


def plan_workers(cluster_cpus: float, cluster_gpus: float, *, workers: int | None = None,
                 gpus_per_worker: float | None = None, cpus_per_worker: float | None = None) -> WorkerPlan:
    """The pool for the given options; whatever is not given is filled from the cluster's size.

    - GPUs per worker: 1 where the cluster has a GPU, else 0 (CPU workers).
    - Workers: one per GPU; on CPUs, as many as fit beside the decode tasks (one CPU per eight
      kept for them, at least one).
    - CPUs per worker: 1 on a GPU; on CPUs up to 4 each, shared out when --workers is given.
    A plan in which not even one worker fits beside one decode task is a BuildError naming the numbers.
    """
    check_worker_options(workers, gpus_per_worker, cpus_per_worker)
    if gpus_per_worker is None:
        gpus_per_worker = 1.0 if cluster_gpus >= 1 else 0.0
    if gpus_per_worker > 0 and cluster_gpus < gpus_per_worker:
        raise BuildError(f"--gpus-per-worker {gpus_per_worker:g} needs a GPU, and the Ray cluster has "
                         f"{cluster_gpus:g}; use --gpus-per-worker 0 to embed on CPUs.")

    if gpus_per_worker > 0:
        cpus = GPU_WORKER_CPUS if cpus_per_worker is None else cpus_per_worker
        count = workers or max(1, math.floor(cluster_gpus / gpus_per_worker + 1e-9))
    else:
        spare = cluster_cpus - max(DECODE_CPUS, math.floor(cluster_cpus / 8))
        if cpus_per_worker is not None:
            cpus = cpus_per_worker
            count = workers or max(1, math.floor(spare / cpus + 1e-9))
        elif workers is not None:
            count, cpus = workers, min(float(CPU_WORKER_THREADS), spare / workers) if spare > 0 else 0.0
        else:
            cpus = float(max(1, min(CPU_WORKER_THREADS, math.floor(spare))))
            count = max(1, math.floor(spare / cpus + 1e-9))

    plan = WorkerPlan(workers=count, cpus_per_worker=cpus, gpus_per_worker=gpus_per_worker,
                      cluster_cpus=cluster_cpus, cluster_gpus=cluster_gpus)
    if cpus <= 0 or plan.workers_that_fit < 1:
        raise BuildError(f"The Ray cluster has {cluster_cpus:g} CPUs: one worker with {cpus:g} CPUs and one "
                         f"decoding task with {DECODE_CPUS:g} do not fit. Lower --cpus-per-worker or --workers.")
    return plan
