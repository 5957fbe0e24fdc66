"""The options of `imagesearch build --engine ray`, as the build receives them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RayOptions:
    """Where the embed stage runs and with what; None leaves the choice to the cluster's size
    (scripts/ray_engine/plan.py) or, for the work folder, beside the collection."""

    address: str | None = None             # --ray-address: auto, host:port, ray://host:port; None: a local Ray
    workers: int | None = None             # --workers
    gpus_per_worker: float | None = None   # --gpus-per-worker
    cpus_per_worker: float | None = None   # --cpus-per-worker
    work_dir: str | None = None            # --work-dir: a folder or an s3:// / gs:// prefix every node reaches
    part_rows: int | None = None           # rows per part (one worker call): 256 on CPUs, 1024 on GPUs
