"""`make run` (imagesearch run): the demo search, its offline failure, and the hand-over to the bot."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import threading
import zipfile
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image

from search_core.layout import Manifest

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


@pytest.mark.parametrize("token", ["MTIz.fake-token-for-test.abcdefghijklmnopqrstuvwxyz0123", ""])
def test_a_missing_own_collection_names_the_variable(tmp_path, token):
    """IMAGESEARCH_COLLECTION naming a missing folder of the user's, with a token in .env or without:
    one line naming the variable; the demo is not built into the user's path; never the token."""
    (tmp_path / ".env").write_text(f"DISCORD_TOKEN={token}\nIMAGESEARCH_COLLECTION=my/scans\n", encoding="utf-8")
    result = _run(["run"], cwd=tmp_path, env={})
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: IMAGESEARCH_COLLECTION names my/scans")
    assert "Traceback" not in result.stderr
    assert not token or token not in result.stderr + result.stdout
    assert not (tmp_path / "my").exists() and not (tmp_path / "collections").exists()


# --- first run with a token: the demo collection is built, then the bot starts ------------------

@pytest.fixture
def restore_environ():
    """run_main loads .env into os.environ, as it does for users; put the environment back after."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture
def demo_zip_url(tmp_path, sample_images):
    """The generated images zipped in the seed's layout (year folders), served on 127.0.0.1."""
    root, images = sample_images
    served = tmp_path / "served"
    served.mkdir()
    with zipfile.ZipFile(served / "embellishments_sample.zip", "w") as z:
        for image in images:
            z.write(image.path, image.path.relative_to(root).as_posix())
    handler = functools.partial(QuietHandler, directory=str(served))
    with ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        yield f"http://127.0.0.1:{server.server_address[1]}/embellishments_sample.zip"
        server.shutdown()
        thread.join()


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args) -> None:
        pass


def _dotenv_from_example(folder: Path, **values: str) -> None:
    """.env.example copied to .env with only the given keys filled in, as the README tells users."""
    lines = []
    for line in (REPO / ".env.example").read_text(encoding="utf-8").splitlines():
        key = line.split("=", 1)[0]
        lines.append(f"{key}={values[key]}" if key in values else line)
    (folder / ".env").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _hermetic_datasets(monkeypatch, tmp_path: Path) -> None:
    """Let datasets download from the local server (the suite runs offline), into a cache under tmp_path."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf")
    monkeypatch.setattr(datasets.config, "DOWNLOADED_DATASETS_PATH", tmp_path / "hf" / "downloads")
    monkeypatch.setattr(datasets.config, "EXTRACTED_DATASETS_PATH", tmp_path / "hf" / "downloads" / "extracted")


def test_first_run_with_a_token_builds_the_demo_collection_then_starts_the_bot(
        tmp_path, tiny_clip, sample_images, demo_zip_url, monkeypatch, restore_environ):
    """.env from .env.example with only DISCORD_TOKEN and IMAGESEARCH_ALLOWED_GUILDS set: `make run`
    builds the missing default collection from the demo source, then hands it to the bot."""
    import bot.__main__
    from scripts import run_main
    from search_core.collection import Collection

    work = tmp_path / "checkout"
    work.mkdir()
    _dotenv_from_example(work, DISCORD_TOKEN="MTIz.fake-token-for-test.abcdefghijklmnopqrstuvwxyz0123",
                         IMAGESEARCH_ALLOWED_GUILDS="123456789012345678")
    for key in [k for k in os.environ if k.startswith(("DISCORD_", "IMAGESEARCH_"))]:
        monkeypatch.delenv(key)
    monkeypatch.setenv(run_main.DEMO_SOURCE, demo_zip_url)
    monkeypatch.setenv(run_main.DEMO_MODEL, str(tiny_clip))
    monkeypatch.chdir(work)
    _hermetic_datasets(monkeypatch, tmp_path)
    started = []

    def fake_bot_main(env=None):
        collection = Path(env["IMAGESEARCH_COLLECTION"])
        started.append((dict(env), Collection.open(collection).rows))
        return 0

    monkeypatch.setattr(bot.__main__, "main", fake_bot_main)
    assert run_main.main() == 0

    built = work / "collections" / "embellishments-sample"
    assert len(started) == 1
    env, rows = started[0]
    assert Path(env["IMAGESEARCH_COLLECTION"]).resolve() == built.resolve()
    assert rows == len(sample_images[1])
    assert env["IMAGESEARCH_ALLOWED_GUILDS"] == "123456789012345678"
    assert Manifest.read(built).source == demo_zip_url

    # A second run finds the collection and starts the bot at once, without building.
    before = (built / "manifest.json").stat().st_mtime_ns
    assert run_main.main() == 0
    assert len(started) == 2 and (built / "manifest.json").stat().st_mtime_ns == before
