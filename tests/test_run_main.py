"""`make run` (imagesearch run): the demo search, its offline failure, and the hand-over to the bot."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[1]


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "IMAGESEARCH_"))}
    full_env.update(env)
    full_env["PYTHONPATH"] = str(REPO)
    return subprocess.run([sys.executable, "-m", "scripts.cli", *args], check=False, cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=300)


def test_demo_searches_a_configured_collection_and_saves_a_sheet(tmp_path, collection_dir):
    """With a collection configured and no token, run prints hits and writes the contact sheet."""
    work = tmp_path / "work"
    (work / "c").mkdir(parents=True)
    os.symlink(collection_dir, work / "c" / "sample")
    result = _run(["run"], cwd=work, env={"IMAGESEARCH_COLLECTION": "c/sample"})
    assert result.returncode == 0, result.stderr
    assert ".jpg" in result.stdout          # the hits' source file names
    sheet = work / "c" / "sample-demo.png"
    with Image.open(sheet) as img:
        assert img.format == "PNG" and img.width > 0


def test_demo_without_internet_fails_with_one_clear_line(tmp_path):
    """No collection and no network: the seed download fails as an error line, not a traceback."""
    result = _run(["run"], cwd=tmp_path, env={"HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"})
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "error: Could not download" in result.stderr
    assert not (tmp_path / "collections" / "embellishments-sample" / "manifest.json").exists()


def test_a_token_in_dotenv_starts_the_bot_instead(tmp_path):
    """DISCORD_TOKEN in .env hands over to the bot, whose config errors name the variable, never the token."""
    token = "MTIz.fake-token-for-test.abcdefghijklmnopqrstuvwxyz0123"
    (tmp_path / ".env").write_text(f"DISCORD_TOKEN={token}\n", encoding="utf-8")
    result = _run(["run"], cwd=tmp_path, env={})
    assert result.returncode != 0
    assert "IMAGESEARCH_COLLECTION" in result.stderr
    assert "Traceback" not in result.stderr
    assert token not in result.stderr + result.stdout
