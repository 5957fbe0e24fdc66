"""The options of `imagesearch build --engine ray`: their command-line group and what the build receives.

Nothing here imports Ray, so `imagesearch build --help` and the local engine work without the extra.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from search_core.errors import BuildError


@dataclass(frozen=True)
class RayOptions:
    """Where the embed stage runs and with what; None leaves the choice to the cluster's size
    (scripts/ray_engine/plan.py) or, for the work folder, beside the collection."""

    address: str | None = None             # --ray-address: auto, host:port, ray://host:port; None: a local Ray
    workers: int | None = None             # --workers
    gpus_per_worker: float | None = None   # --gpus-per-worker
    cpus_per_worker: float | None = None   # --cpus-per-worker
    work_dir: str | None = None            # --work-dir: a folder or an s3:// / gs:// prefix every node reaches
    part_rows: int | None = None           # rows per part (one worker call): 64 on CPUs, 1024 on GPUs


# (flag, RayOptions field) of the options that only --engine ray reads
FLAGS = (("--ray-address", "address"), ("--workers", "workers"), ("--gpus-per-worker", "gpus_per_worker"),
         ("--cpus-per-worker", "cpus_per_worker"), ("--work-dir", "work_dir"))


def add_ray_arguments(parser: argparse.ArgumentParser) -> None:
    """The Ray engine's options, in a group of their own in `imagesearch build --help`."""
    group = parser.add_argument_group(
        "Ray engine (--engine ray)",
        "embed on a Ray cluster, or a local Ray on this machine (needs pip install 'imagesearch[ray]')")
    group.add_argument("--ray-address", dest="address", default=None, metavar="ADDR",
                       help="join this Ray cluster: auto (the one `ray start --head` started here, or "
                            "RAY_ADDRESS), HOST:PORT or ray://HOST:PORT (default: start a local Ray on this "
                            "machine, every core)")
    group.add_argument("--workers", type=int, default=None, metavar="N",
                       help="model copies embedding at once (default: one per GPU; on CPUs as many as fit "
                            "beside the decoding tasks, 4 CPUs each)")
    group.add_argument("--gpus-per-worker", type=float, default=None, metavar="G",
                       help="GPUs per worker (default 1 where the cluster has GPUs, else 0; 0.5 puts two "
                            "workers on one GPU)")
    group.add_argument("--cpus-per-worker", type=float, default=None, metavar="C",
                       help="CPUs per worker (default 1 on a GPU, up to 4 on CPUs); the rest decode images")
    group.add_argument("--work-dir", default=None, metavar="FOLDER_OR_URL",
                       help="where the workers write their embeddings (default: beside --out); on a cluster, "
                            "storage every node reaches: s3://..., gs://... or a shared folder")


def ray_options(args: argparse.Namespace) -> RayOptions | None:
    """RayOptions for --engine ray; None for another engine, which must not be given Ray's options."""
    given = [flag for flag, field in FLAGS if getattr(args, field) is not None]
    if args.engine != "ray":
        if given:
            raise BuildError(f"{given[0]} is an option of the Ray engine: add --engine ray.")
        return None
    return RayOptions(**{field: getattr(args, field) for _, field in FLAGS})
