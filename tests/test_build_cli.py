"""`imagesearch build` on the command line: one error line and a non-zero exit, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from scripts.build_cli import main
from search_core import layout

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "scripts.build_cli", *args], check=False,
                          capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=120)


def test_missing_path_in_a_real_process(tmp_path: Path):
    """A missing SOURCE: exit 1, exactly one stderr line starting 'error:', no traceback."""
    result = run_cli(str(tmp_path / "nope"), "--out", str(tmp_path / "out"))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"error: Source folder {tmp_path / 'nope'} does not exist."]
    assert result.stdout == ""


@pytest.mark.parametrize("case", ["empty folder", "unknown model"])
def test_cli_errors_are_one_line(tmp_path: Path, sample_images, capsys, case):
    """Empty folder and unknown model: exit 1 and one 'error:' line on stderr, no traceback."""
    if case == "empty folder":
        (tmp_path / "empty").mkdir()
        argv = [str(tmp_path / "empty"), "--out", str(tmp_path / "out")]
    else:
        argv = [str(sample_images[0]), "--out", str(tmp_path / "out"), "--model", "no-such/clip-model"]
    assert main(argv + ["--no-progress"]) == 1
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_success_prints_path_to_stdout_and_summary(tmp_path: Path, sample_images, tiny_clip, capsys):
    """A build prints the collection path alone on stdout; rows, time, speed, index on stderr."""
    out = tmp_path / "coll"
    code = main([str(sample_images[0]), "--out", str(out), "--model", str(tiny_clip), "--device", "cpu",
                 "--index", "ivf-sq8", "--no-progress"])
    captured = capsys.readouterr()
    assert code == 0
    assert captured.out.strip() == str(out.absolute())
    assert "Built 24 images" in captured.err and "images/s" in captured.err
    assert "measured recall@10" in captured.err and "Skipped 0 files" in captured.err
    assert layout.Manifest.read(out).index.recall_at_10 is not None


def test_folder_with_an_unrelated_manifest_is_refused_and_left_intact(tmp_path: Path, sample_images,
                                                                     tiny_clip, capsys):
    """A manifest.json that is not a collection's does not make a folder replaceable: one error line."""
    out = tmp_path / "webapp"
    (out / "src").mkdir(parents=True)
    (out / "manifest.json").write_text('{"name": "My app", "version": "1.0", "manifest_version": 3}')
    (out / "src" / "app.js").write_text("console.log('precious');\n")
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    code = main([str(sample_images[0]), "--out", str(out), "--model", str(tiny_clip), "--device", "cpu",
                 "--no-progress"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert len(lines) == 1 and lines[0].startswith("error:") and "is not a collection" in lines[0]
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["webapp"]


def test_a_zero_batch_size_is_refused_before_any_slow_work(tmp_path: Path) -> None:
    """--batch-size 0 is one error line at once: checked before the source is opened or a model
    loaded (here both would fail with other errors, so the message proves the order)."""
    result = run_cli(str(tmp_path / "no-such-folder"), "--out", str(tmp_path / "c"),
                     "--model", "no-such-model", "--batch-size", "0")
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == ["error: --batch-size must be at least 1."]
