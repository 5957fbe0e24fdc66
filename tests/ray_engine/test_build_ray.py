"""`imagesearch build --engine ray` end to end: the local engine's collection, a driver killed part
way resumed, and one clear line for a missing extra, a bad address or a Ray option without Ray."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import datasets
import numpy as np
from pyarrow import feather

from scripts.build import build_collection
from scripts.cli import main as cli_main
from scripts.ray_engine.cluster import INSTALL_HINT
from scripts.ray_engine.options import RayOptions
from search_core import layout
from tests.fixtures.images import bl_file_name, draw_image
from tests.ray_engine.conftest import ROOT, ray_environment
from tests.test_build_resume import kill_after_first_shard

# What may differ between two builds of the same source (when, which build, the files' checksums)
# or follows from vectors equal to 1e-4 rather than bit for bit (the weak-match percentiles).
PER_BUILD = {"built_at", "build_id", "build_seconds", "checksums", "match_scale", "model_probe"}


def manifest(out: Path) -> dict:
    return json.loads((out / layout.MANIFEST).read_text())


def rows(out: Path) -> list[dict]:
    dataset = datasets.load_from_disk(str(out / layout.DATASET_DIR))
    return dataset.cast_column("image", datasets.Image(decode=False)).to_list()


def assert_same_collection(out: Path, local: Path) -> None:
    """Same rows in the same (year) order with the same metadata and image bytes, the same skipped
    list, files and manifest, and each row's vector at cosine >= 0.9999 to the local engine's."""
    assert rows(out) == rows(local)
    assert (out / layout.SKIPPED).read_text() == (local / layout.SKIPPED).read_text()
    assert feather.read_table(out / layout.FILES).equals(feather.read_table(local / layout.FILES))
    mine, theirs = manifest(out), manifest(local)
    assert {k: v for k, v in mine.items() if k not in PER_BUILD} == \
        {k: v for k, v in theirs.items() if k not in PER_BUILD}
    a, b = np.load(out / layout.EMBEDDINGS), np.load(local / layout.EMBEDDINGS)
    assert a.shape == b.shape and np.einsum("ij,ij->i", a, b).min() >= 0.9999


def test_ray_build_is_the_local_build(ray_session, mixed_folder, tiny_clip, local, tmp_path, capfd):
    """Through the command line. Also: one progress line per stage, the embed line with its rate and
    workers, and nothing of Ray's own (bars, banners, core notices) on stderr."""
    out = tmp_path / "coll"
    code = cli_main(["build", str(mixed_folder), "--out", str(out), "--model", str(tiny_clip), "--device", "cpu",
                     "--no-progress", "--engine", "ray", "--workers", "1"])
    assert code == 0
    assert_same_collection(out, local["out"])
    assert list(tmp_path.glob(".coll.*")) == [], "work folder and parts removed after success"
    captured = capfd.readouterr()
    lines = captured.err.splitlines()
    assert [line.split(":")[0] for line in lines[:5]] == ["scan", "embed", "index", "group", "write"], lines
    images = manifest(out)["rows"] + len(local["skipped"])
    assert re.fullmatch(rf"embed: {images} images in [0-9.]+ s \([0-9.,]+ images/s; 1 worker\)", lines[1]), lines
    assert lines[5].startswith("Built ") and captured.out == f"{out}\n"


def test_incremental_ray_build_is_the_local_incremental_build(ray_session, mixed_folder, tiny_clip, local,
                                                              tmp_path):
    """Two images added to the source of the local collection: Ray embeds only those, and the update
    equals the local engine's update of the same collection."""
    source = tmp_path / "src"
    shutil.copytree(mixed_folder, source)        # copy2: same sizes and times, so the old rows are kept
    for i in range(2):
        draw_image(900 + i).save(source / "1890" / bl_file_name(900 + i, 0, 1, 1, f"Added {i}", 1890), "JPEG")
    outs = {}
    for engine in ("local", "ray"):
        outs[engine] = tmp_path / engine / "coll"
        shutil.copytree(local["out"], outs[engine])
        summary = build_collection(str(source), outs[engine], model=str(tiny_clip), device="cpu", progress=False,
                                   engine=engine, ray=RayOptions(workers=1) if engine == "ray" else None)
        assert (summary.embedded, summary.changes.added, summary.changes.kept) == (2, 2, 24), engine
    assert_same_collection(outs["ray"], outs["local"])


# The child: the real build on the test's Ray, its driver slowed down after each part it reads, so
# the parent can kill it once the first shard is written.
CHILD = """
import sys, time
from pathlib import Path
import scripts.ray_engine.embed as embed
real = embed._read_reported
def slow(*args):
    time.sleep(0.5)
    return real(*args)
embed._read_reported = slow
from scripts.build import build_collection
from scripts.ray_engine.options import RayOptions
build_collection(sys.argv[1], Path(sys.argv[2]), model=sys.argv[3], device="cpu", progress=False, shard_size=8,
                 engine="ray", ray=RayOptions(address=sys.argv[4], workers=1, part_rows=4))
"""


def test_killed_ray_build_resumes(ray_session, mixed_folder, tiny_clip, local, tmp_path):
    """SIGKILL the driver once its first shard is written; the same build again reuses the shards
    and parts already there and gives the local engine's collection."""
    import ray

    out = tmp_path / "coll"
    stderr = kill_after_first_shard(mixed_folder, out, tiny_clip, child_code=CHILD, env=ray_environment(ray_session),
                                    args=(ray.get_runtime_context().gcs_address,))
    assert not out.exists()
    noise = [line for line in stderr.splitlines()
             if any(mark in line for mark in ("core_worker", "ray log level", "Running Dataset", "(raylet)"))]
    assert noise == [], "Ray's own notices reached the build's stderr"

    summary = build_collection(str(mixed_folder), out, model=str(tiny_clip), device="cpu", progress=False,
                               shard_size=8, engine="ray", ray=RayOptions(workers=1, part_rows=4))
    assert summary.resumed >= 8 and summary.embedded < summary.rows
    assert_same_collection(out, local["out"])


# --- One clear line ---------------------------------------------------------------------------

def run_cli(args: list[str], capsys) -> tuple[int, str]:
    code = cli_main(["build", *args])
    return code, capsys.readouterr().err


def test_missing_extra_says_how_to_install_it(monkeypatch, capsys, mixed_folder, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)
    code, err = run_cli([str(mixed_folder), "--out", str(tmp_path / "c"), "--engine", "ray"], capsys)
    assert code == 1 and err.count("\n") == 1 and err.startswith("error: ") and INSTALL_HINT in err
    assert not (tmp_path / "c").exists()


def test_impossible_worker_option_is_one_line_before_any_work(capsys, mixed_folder, tmp_path):
    code, err = run_cli([str(mixed_folder), "--out", str(tmp_path / "c"), "--engine", "ray", "--workers", "0"],
                        capsys)
    assert code == 1 and err == "error: --workers must be at least 1.\n"


def test_ray_option_without_the_ray_engine(capsys, mixed_folder, tmp_path):
    code, err = run_cli([str(mixed_folder), "--out", str(tmp_path / "c"), "--workers", "2"], capsys)
    assert code == 1 and err == "error: --workers is an option of the Ray engine: add --engine ray.\n"


def test_unreachable_address_is_one_line_fast(mixed_folder, tiny_clip, tmp_path):
    """The real command in a fresh process (no Ray running in it): refused at once, one line."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "scripts.cli", "build", str(mixed_folder), "--out",
                           str(tmp_path / "c"), "--model", str(tiny_clip), "--engine", "ray",
                           "--ray-address", f"127.0.0.1:{port}"],
                          check=False, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr == (f"error: Cannot reach the Ray cluster at 127.0.0.1:{port}: connection refused at "
                           f"127.0.0.1:{port} (is `ray start --head` running there?).\n")
    assert time.monotonic() - started < 60 and not (tmp_path / "c").exists()
