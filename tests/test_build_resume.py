"""Kill a build with SIGKILL after its first shard, run it again: it resumes, and the result
equals a clean build. Shards are reused only for the same source, row order and settings."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import datasets
import numpy as np
import pytest

import scripts.build
from scripts.build import build_collection
from search_core import layout
from tests.test_build import jpeg_bytes

ROOT = Path(__file__).resolve().parents[1]

# The child slows its model down after the first shard (2 batches of 4) so that the parent can
# kill it part way; everything else is the real build.
CHILD = """
import sys, time
from search_core.encoder import Encoder
real = Encoder.embed_preprocessed
calls = []
def slow(self, features):
    calls.append(1)
    if len(calls) > 2:
        time.sleep(1.0)
    return real(self, features)
Encoder.embed_preprocessed = slow
from scripts.build import build_collection
build_collection(sys.argv[1], __import__("pathlib").Path(sys.argv[2]), model=sys.argv[3], device="cpu",
                 batch_size=4, shard_size=8, progress=False)
"""


def kill_after_first_shard(source: Path, out: Path, tiny_clip: Path, *, child_code: str = CHILD,
                           args: tuple[str, ...] = (), env: dict[str, str] | None = None) -> str:
    """Run the build of `child_code` (argv: source, out, model, *args) in a process and SIGKILL it
    once its first shard is on disk; returns what it wrote to stderr."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONPATH": str(ROOT), **(env or {})}
    child = subprocess.Popen([sys.executable, "-c", child_code, str(source), str(out), str(tiny_clip), *args],
                             env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not (out.parent / f".{out.name}.build" / "shard_00000.npz").exists():
            assert child.poll() is None, child.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "first shard never appeared"
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    return child.stderr.read().decode()


def test_killed_build_resumes_without_redoing_done_shards(tmp_path: Path, sample_images, tiny_clip,
                                                           collection_dir: Path):
    """After SIGKILL past the first shard, a re-run embeds fewer images and matches a clean build."""
    out = tmp_path / "coll"
    kill_after_first_shard(sample_images[0], out, tiny_clip)
    assert not out.exists(), "a killed build must not leave a collection at OUT"

    summary = build_collection(str(sample_images[0]), out, model=str(tiny_clip), device="cpu",
                               batch_size=4, shard_size=8, progress=False)
    assert summary.resumed >= 8
    assert summary.embedded <= 24 - 8
    assert summary.rows == 24
    clean = np.load(collection_dir / layout.EMBEDDINGS)
    assert np.allclose(np.load(out / layout.EMBEDDINGS), clean, atol=1e-4)
    assert list(tmp_path.glob(".coll.*")) == [], "work folder removed after success"


def test_killed_incremental_build_resumes_and_keeps_the_old_collection(tmp_path: Path, tiny_clip: Path):
    """20 images added to a collection of 12, SIGKILL after the first shard of the update: the old
    collection is still there untouched, and the re-run embeds only what the killed run had not."""
    from tests.fixtures.images import make_imagefolder
    from tests.test_build_incremental import add_images, vectors_by_name

    src, out = tmp_path / "src", tmp_path / "coll"
    make_imagefolder(src, n=12)
    build(src, out, tiny_clip)
    before_manifest = (out / layout.MANIFEST).read_bytes()
    before = vectors_by_name(out)
    added = add_images(src, 20)
    kill_after_first_shard(src, out, tiny_clip)
    assert (out / layout.MANIFEST).read_bytes() == before_manifest, "the old collection must stay in place"

    summary = build(src, out, tiny_clip, batch_size=4, shard_size=8)
    assert summary.resumed >= 8 and summary.embedded <= 20 - 8
    c = summary.changes
    assert (c.incremental, c.added, c.changed, c.removed, c.kept) == (True, 20, 0, 0, 12)
    after = vectors_by_name(out)
    assert set(after) == set(before) | set(added)
    assert all(after[name] == vector for name, vector in before.items())
    assert list(tmp_path.glob(".coll.*")) == [], "work folder removed after success"


def fail_at_index(monkeypatch) -> None:
    """Make the next build stop with every shard written, as a crash after embedding would."""
    def explode(*args, **kwargs):
        raise RuntimeError("crash after embedding (injected)")

    monkeypatch.setattr(scripts.build, "build_index", explode)


def build(source: Path, out: Path, tiny_clip: Path, **kwargs):
    return build_collection(str(source), out, model=str(tiny_clip), device="cpu", progress=False, **kwargs)


def crashed_build(source: Path, out: Path, tiny_clip: Path, monkeypatch, **kwargs) -> None:
    """A build that dies after writing every shard (fail_at_index), leaving its work folder behind."""
    with monkeypatch.context() as m:
        fail_at_index(m)
        with pytest.raises(RuntimeError, match="injected"):
            build(source, out, tiny_clip, **kwargs)


def save_source(path: Path, years: list[int]) -> None:
    """Six distinct images with a curated year column, saved (again) at `path`."""
    rows = {"image": [{"bytes": jpeg_bytes(200 + i), "path": None} for i in range(len(years))],
            "file_name": [f"img{i}.jpg" for i in range(len(years))], "year": years}
    features = datasets.Features({"image": datasets.Image(), "file_name": datasets.Value("string"),
                                  "year": datasets.Value("int32")})
    if path.exists():
        shutil.rmtree(path)
    datasets.Dataset.from_dict(rows, features=features).save_to_disk(str(path))


def test_changed_row_order_reuses_shards_on_the_right_rows(tmp_path: Path, tiny_clip: Path, monkeypatch):
    """Same images, new years (so a new row order): shards name source rows, not positions, so they are
    reused, and every embedding still sits on its own row."""
    src = tmp_path / "src"
    save_source(src, [1850, 1860, 1870, 1880, 1890, 1900])
    crashed_build(src, tmp_path / "coll", tiny_clip, monkeypatch, batch_size=2, shard_size=4)

    save_source(src, [1900, 1890, 1880, 1870, 1860, 1850])
    summary = build(src, tmp_path / "coll", tiny_clip, batch_size=2, shard_size=4)
    build(src, tmp_path / "clean", tiny_clip, batch_size=2, shard_size=4)
    resumed = datasets.load_from_disk(str(tmp_path / "coll" / layout.DATASET_DIR))["file_name"][:]
    clean = datasets.load_from_disk(str(tmp_path / "clean" / layout.DATASET_DIR))["file_name"][:]
    assert resumed == clean == [f"img{i}.jpg" for i in range(5, -1, -1)]
    assert np.allclose(np.load(tmp_path / "coll" / layout.EMBEDDINGS),
                       np.load(tmp_path / "clean" / layout.EMBEDDINGS), atol=1e-4)
    assert (summary.resumed, summary.embedded) == (6, 0)


def test_retry_with_smaller_batch_size_resumes(tmp_path: Path, sample_images, tiny_clip: Path,
                                               collection_dir: Path, monkeypatch):
    """A retry with a smaller --batch-size (as after running out of GPU memory) embeds nothing again."""
    out = tmp_path / "coll"
    crashed_build(sample_images[0], out, tiny_clip, monkeypatch, batch_size=4, shard_size=8)

    summary = build(sample_images[0], out, tiny_clip, batch_size=2, shard_size=8)
    assert (summary.resumed, summary.embedded, summary.rows) == (24, 0, 24)
    assert np.allclose(np.load(out / layout.EMBEDDINGS), np.load(collection_dir / layout.EMBEDDINGS), atol=1e-4)


def test_shards_of_other_settings_are_discarded(tmp_path: Path, sample_images, tiny_clip: Path, monkeypatch):
    """Shards written under other settings are not reused and leave nothing behind once a build completes."""
    out = tmp_path / "coll"
    crashed_build(sample_images[0], out, tiny_clip, monkeypatch, batch_size=4, shard_size=8)

    summary = build(sample_images[0], out, tiny_clip, batch_size=4, shard_size=12)
    assert (summary.resumed, summary.embedded) == (0, 24)
    assert list(tmp_path.glob(".coll*")) == []
