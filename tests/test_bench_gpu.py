"""benchmarks.bench_gpu: one clear line without a GPU, and the whole script checked on the CPU
(a dry run with a Pillow stand-in for nvJPEG), so its first run on a GPU machine is not its first run."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def run_bench(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "benchmarks.bench_gpu", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_without_cuda_it_says_so_in_one_line() -> None:
    result = run_bench()
    assert result.returncode == 2
    assert result.stdout.strip().count("\n") == 0
    assert result.stdout.startswith("bench_gpu needs a CUDA GPU and torchvision built with CUDA (nvJPEG); here: ")
    assert "Traceback" not in result.stderr


def test_dry_run_on_the_cpu_runs_every_part(tiny_clip: Path) -> None:
    result = run_bench("--cpu-dry-run", "--model", str(tiny_clip), "--images", "48", "--odd-each", "1",
                       "--seed-images", "8", "--agree-images", "24", "--batch", "8", "--epochs", "2",
                       "--repeats", "1", "--workers", "1")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    for part in ("(b) model alone", "ours, files on disk -> embeddings on the host", "decoding (last run",
                 "-> PASS", "same rows embedded and same files skipped with the same reasons: True",
                 "(a) seed pipeline", "`imagesearch build --device cpu` end to end", "ours / (a) seed",
                 "vector check: PASS"):
        assert part in out, f"{part!r} missing from:\n{out}"
    assert "2 skipped" in out    # the truncated JPEG and the file that is no image, on both paths


def test_utilisation_is_sampled_from_nvidia_smi_without_pynvml(tmp_path: Path, monkeypatch) -> None:
    """What a GPU machine without pynvml does; and a sampler that breaks ends quietly."""
    from unittest.mock import patch

    with patch.dict(os.environ):      # benchmarks.common sets offline and no-progress-bar variables
        from benchmarks.bench_gpu import gpu_utilisation

    monkeypatch.setitem(sys.modules, "pynvml", None)     # import pynvml -> ImportError
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 42\n")
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    with gpu_utilisation(True, interval=0.01) as util:
        time.sleep(0.6)
    assert util.source == "nvidia-smi" and util.samples and set(util.samples) == {42.0}
    assert "mean 42%" in str(util)

    smi.write_text("#!/bin/sh\nexit 9\n")
    with gpu_utilisation(True) as broken:
        time.sleep(0.3)
    assert broken.samples == [] and "not measured" in str(broken)
