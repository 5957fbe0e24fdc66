"""RebuildWatcher and build versions, without Discord: when a folder is reopened, and when not.

The end-to-end swap (a real build, a query in flight, old pagers) is in tests/test_bot_reload.py;
here the opener is a stub that counts its calls, so "not reopened" is asserted directly.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from bot import watch
from bot.library import Library, edition_of
from bot.settings import CollectionSpec
from bot.watch import RebuildWatcher, Stamp, build_version
from search_core.errors import CollectionError


def write_manifest(folder: Path, **fields) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "manifest.json").write_text(json.dumps({"built_at": "2026-12-01T10:00:00+00:00", **fields}),
                                          encoding="utf-8")


def replace_folder(folder: Path, **fields) -> None:
    """What a build does: a new folder renamed into place, the old one renamed away and deleted."""
    new = folder.with_name(folder.name + ".new")
    write_manifest(new, **fields)
    old = folder.with_name(folder.name + ".old")
    os.rename(folder, old)
    os.rename(new, folder)
    (old / "manifest.json").unlink()
    old.rmdir()


class Opener:
    """Opens a folder into an edition with a stand-in service; fails while `error` is set."""

    def __init__(self) -> None:
        self.calls = 0
        self.error: Exception | None = None

    def __call__(self, spec: CollectionSpec):
        self.calls += 1
        if self.error is not None:
            raise self.error
        return edition_of(spec, SimpleNamespace(collection=SimpleNamespace(rows=7, years=None)))


@pytest.fixture
def setup(tmp_path: Path):
    folder = tmp_path / "maps"
    write_manifest(folder, build_id="b1")
    opener = Opener()
    spec = CollectionSpec("maps", folder)
    library = Library([opener(spec)], opener=opener)
    opener.calls = 0
    return folder, library, opener, RebuildWatcher(library, interval=10)


def test_build_id_is_the_version_when_the_manifest_has_one(tmp_path: Path) -> None:
    write_manifest(tmp_path, build_id="20261201-abc")
    assert build_version(tmp_path, Stamp.of(tmp_path)) == "20261201-abc"


def test_without_build_id_a_replaced_manifest_is_another_version(tmp_path: Path) -> None:
    """Collections built before build ids: built_at to the second plus the manifest's identity, so two
    builds within one second still differ."""
    folder = tmp_path / "c"
    write_manifest(folder)
    first = build_version(folder, Stamp.of(folder))
    replace_folder(folder)
    second = build_version(folder, Stamp.of(folder))
    assert first.startswith("2026-12-01T10:00:00") and first != second


@pytest.mark.asyncio
async def test_nothing_changed_nothing_opened(setup) -> None:
    _, _, opener, watcher = setup
    assert await watcher.check() == [] and opener.calls == 0


@pytest.mark.asyncio
async def test_a_new_build_is_opened_and_swapped(setup, caplog: pytest.LogCaptureFixture) -> None:
    folder, library, opener, watcher = setup
    old = library.current("maps")
    replace_folder(folder, build_id="b2")
    with caplog.at_level(logging.INFO, logger="bot.watch"):
        assert await watcher.check() == ["maps"]
    assert opener.calls == 1 and library.current("maps").version == "b2" and library.current("maps") is not old
    assert "switched from build b1 to build b2" in caplog.text
    assert await watcher.check() == [] and opener.calls == 1


@pytest.mark.asyncio
async def test_the_same_build_rewritten_is_not_reopened(setup) -> None:
    """A manifest copied or touched with the same build id: no reload, so pagers stay valid."""
    folder, library, opener, watcher = setup
    replace_folder(folder, build_id="b1")
    assert await watcher.check() == [] and opener.calls == 0
    assert library.current("maps").version == "b1" and library.current("maps").stamp == Stamp.of(folder)
    assert await watcher.check() == [] and opener.calls == 0


@pytest.mark.asyncio
async def test_a_failed_build_is_retried_only_when_it_changes(setup, caplog: pytest.LogCaptureFixture,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A replacement that fails to open is logged once and not reopened at every check; a newer
    manifest, or RETRY_SECONDS later the same one, is tried again."""
    folder, library, opener, watcher = setup
    opener.error = CollectionError("index.faiss in /x is corrupt or not a FAISS index.")
    replace_folder(folder, build_id="b2")
    with caplog.at_level(logging.WARNING, logger="bot.watch"):
        for _ in range(3):
            assert await watcher.check() == []
    assert opener.calls == 1 and library.current("maps").version == "b1"
    assert caplog.text.count("ignoring the replacement build b2 (index.faiss in /x is corrupt") == 1

    monkeypatch.setattr(watch, "RETRY_SECONDS", 0.0)
    assert await watcher.check() == [] and opener.calls == 2
    monkeypatch.setattr(watch, "RETRY_SECONDS", 300.0)

    opener.error = None
    replace_folder(folder, build_id="b3")
    assert await watcher.check() == ["maps"] and library.current("maps").version == "b3"


@pytest.mark.asyncio
async def test_an_unexpected_error_is_logged_with_its_traceback_and_the_bot_goes_on(
        setup, caplog: pytest.LogCaptureFixture) -> None:
    folder, library, opener, watcher = setup
    opener.error = ZeroDivisionError("bug")
    replace_folder(folder, build_id="b2")
    with caplog.at_level(logging.ERROR, logger="bot.watch"):
        assert await watcher.check() == []
    assert "ZeroDivisionError" in caplog.text and library.current("maps").version == "b1"


@pytest.mark.asyncio
async def test_a_missing_manifest_is_noted_once_and_waited_for(setup, caplog: pytest.LogCaptureFixture) -> None:
    folder, _, opener, watcher = setup
    os.rename(folder, folder.with_name("away"))
    with caplog.at_level(logging.INFO, logger="bot.watch"):
        assert await watcher.check() == [] and await watcher.check() == []
    assert caplog.text.count("is missing") == 1 and opener.calls == 0
    os.rename(folder.with_name("away"), folder)
    assert await watcher.check() == [] and opener.calls == 0


@pytest.mark.asyncio
async def test_a_library_without_an_opener_is_not_watched(tmp_path: Path) -> None:
    write_manifest(tmp_path / "c", build_id="b1")
    library = Library([edition_of(CollectionSpec("c", tmp_path / "c"), SimpleNamespace())])
    watcher = RebuildWatcher(library, interval=0.01)
    watcher.start()
    assert not watcher.loop.is_running()
