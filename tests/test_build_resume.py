"""Kill a build with SIGKILL after its first shard, run it again: it resumes, and the result
equals a clean build."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from scripts.build import build_collection
from search_core import layout

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


def test_killed_build_resumes_without_redoing_done_shards(tmp_path: Path, sample_images, tiny_clip,
                                                           collection_dir: Path):
    """After SIGKILL past the first shard, a re-run embeds fewer images and matches a clean build."""
    out = tmp_path / "coll"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(sample_images[0]), str(out), str(tiny_clip)],
                             env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 90
        while not list(tmp_path.glob(".coll.build-*/shard_00000.npz")):
            assert child.poll() is None, child.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "first shard never appeared"
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    assert not out.exists(), "a killed build must not leave a collection at OUT"

    summary = build_collection(str(sample_images[0]), out, model=str(tiny_clip), device="cpu",
                               batch_size=4, shard_size=8, progress=False)
    assert summary.resumed >= 8
    assert summary.embedded <= 24 - 8
    assert summary.rows == 24
    clean = np.load(collection_dir / layout.EMBEDDINGS)
    assert np.allclose(np.load(out / layout.EMBEDDINGS), clean, atol=1e-4)
    assert list(tmp_path.glob(".coll.*")) == [], "work folder removed after success"
