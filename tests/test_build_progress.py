"""Build output: one display per stage of ours (scan, embed, index, group, write), none of the libraries' bars."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

import datasets

from scripts.build_cli import main

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("scan", "embed", "index", "group", "write")
# What datasets printed beside our own bar before: "Generating train split", "Flattening the
# indices" (twice), "storing images" (our map's desc), "Saving the dataset"; and its other bars.
LIBRARY_TEXTS = ("Generating train split", "Flattening the indices", "storing images", "Saving the dataset",
                 "Resolving data files", "Map", "Casting", "Loading dataset")


def _build_command(source: Path, out: Path, model: Path) -> list[str]:
    return [sys.executable, "-m", "scripts.cli", "build", str(source), "--out", str(out),
            "--model", str(model), "--device", "cpu"]


def _env() -> dict[str, str]:
    """The build's environment, without TQDM_DISABLE (tqdm's own switch, which would hide the bars)."""
    env = {key: value for key, value in os.environ.items() if key != "TQDM_DISABLE"}
    return {**env, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONPATH": str(ROOT)}


def test_a_build_in_a_log_prints_one_line_per_stage_and_no_library_bars(tmp_path: Path, sample_images, tiny_clip):
    """stderr not a terminal (a pipe, as in a log): exactly one line per stage, each with its count and
    rate; none of datasets' bars or notices."""
    root, images = sample_images
    result = subprocess.run(_build_command(root, tmp_path / "coll", tiny_clip), capture_output=True, text=True,
                            env=_env(), cwd=ROOT, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    n = len(images)
    for name, unit in zip(STAGES, ("images", "images", "vectors", "vectors", "images")):
        lines = [line for line in result.stderr.splitlines() if line.startswith(f"{name}:")]
        assert len(lines) == 1, (name, result.stderr)
        assert re.fullmatch(rf"{name}: {n} {unit} in \d+\.\d s \([\d,]+\.\d {unit}/s(; .*)?\)", lines[0]), lines[0]
    for text in LIBRARY_TEXTS:
        assert text not in result.stderr
    assert "\r" not in result.stderr and "%|" not in result.stderr   # no bar redraws in a log


def test_a_build_on_a_terminal_draws_one_bar_per_stage_and_no_library_bars(tmp_path: Path, sample_images,
                                                                            tiny_clip):
    """stderr a terminal: one tqdm bar per stage of ours, each finishing at the full count, and none
    of datasets' bars."""
    root, images = sample_images
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    try:
        child = subprocess.Popen(_build_command(root, tmp_path / "coll", tiny_clip), stdin=subprocess.DEVNULL,
                                 stdout=subprocess.PIPE, stderr=slave, env=_env(), cwd=ROOT)
        os.close(slave)
        chunks = []
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:      # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        assert child.wait(timeout=300) == 0
    finally:
        os.close(master)
    screen = b"".join(chunks).decode(errors="replace")
    drawn = [part.strip() for part in re.split(r"[\r\n]", screen) if part.strip()]
    n = len(images)
    assert any(re.match(rf"scan: {n} images \[", line) for line in drawn), drawn
    for name in STAGES[1:]:
        assert any(re.match(rf"{name}: 100%\|.*\| {n}/{n} \[", line) for line in drawn), (name, drawn)
    descs = {line.split(":", 1)[0] for line in drawn if "%|" in line or " images [" in line}
    assert descs == set(STAGES), drawn
    for text in LIBRARY_TEXTS:
        assert text not in screen


def test_no_progress_prints_stage_lines_and_restores_datasets_bars(tmp_path: Path, sample_images, tiny_clip,
                                                                    capsys):
    """--no-progress: the one-line-per-stage output; the library settings the caller had come back."""
    assert datasets.is_progress_bar_enabled()
    code = main([str(sample_images[0]), "--out", str(tmp_path / "coll"), "--model", str(tiny_clip),
                 "--device", "cpu", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 0
    assert [line.split(":")[0] for line in err.splitlines() if line.split(":")[0] in STAGES] == list(STAGES)
    assert datasets.is_progress_bar_enabled()
