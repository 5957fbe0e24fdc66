"""A local Ray for the engine's tests: 2 CPUs, no dashboard, its files in a temporary folder.

Started once for this package and stopped after it. Its session files (sockets, logs) go to a
short folder under /tmp (a Unix socket path must stay under 108 bytes, pytest's tmp_path can be
longer), and the auth token a new Ray writes under the home folder goes to a temporary home.
The workers import this checkout (PYTHONPATH), so test helpers such as tests/ray_engine/faults.py
reach them.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import datasets
import numpy as np
import pytest

from scripts.build import build_collection
from scripts.ray_engine.cluster import quiet_core_logs
from search_core import layout
from tests.fixtures.images import make_imagefolder
from tests.test_build import BAD_FILES

ROOT = Path(__file__).resolve().parents[2]


def ray_environment(folder: Path) -> dict[str, str]:
    """Variables that keep a Ray started with them inside `folder` and able to import this checkout."""
    (folder / "home").mkdir(parents=True, exist_ok=True)
    return {"RAY_TMPDIR": str(folder / "ray"), "HOME": str(folder / "home"),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}


@pytest.fixture(scope="package")
def ray_session() -> Iterator[Path]:
    """Yields the folder of its files (ray_environment(folder) lets another process join it)."""
    ray = pytest.importorskip("ray", reason="the Ray extra is not installed (pip install '.[ray]')")
    folder = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
    env = ray_environment(folder)
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        with quiet_core_logs():    # as the build connects: the tests check its output has no Ray notices
            ray.init(num_cpus=2, include_dashboard=False, _temp_dir=str(folder / "ray"), log_to_driver=False,
                     logging_level=logging.ERROR, object_store_memory=300 * 2**20)
    finally:
        # Only Ray's own processes, started just now, keep these; the rest of the suite does not.
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    try:
        yield folder
    finally:
        ray.shutdown()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="package")
def mixed_folder(tmp_path_factory) -> Path:
    """The local build's sample (24 BL-named images in year folders) with its bad files among them."""
    root = tmp_path_factory.mktemp("mixed")
    make_imagefolder(root, n=24)
    for name, data in BAD_FILES.items():
        (root / "1870" / name).write_bytes(data)
    return root


@pytest.fixture(scope="package")
def local(mixed_folder: Path, tiny_clip: Path, tmp_path_factory) -> dict:
    """The local engine's collection: its folder, vectors by file name, and its skipped list."""
    out = tmp_path_factory.mktemp("local") / "coll"
    summary = build_collection(str(mixed_folder), out, model=str(tiny_clip), device="cpu", progress=False)
    names = datasets.load_from_disk(str(out / layout.DATASET_DIR))["file_name"][:]
    return {"out": out, "vectors": dict(zip(names, np.load(out / layout.EMBEDDINGS))), "skipped": sorted(summary.skipped)}
