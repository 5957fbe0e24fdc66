"""The audit log writes off the event loop, loses no line at shutdown, and never raises a write error."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from pathlib import Path

import pytest

from bot import audit as audit_module
from bot.audit import AuditLog
from bot.client import ImageBot
from bot.library import Library
from bot.settings import CollectionSpec, Settings


@pytest.fixture
def stalled_disk(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """Every file write waits until the returned event is set: a disk that has stopped answering."""
    release = threading.Event()
    append = audit_module.append_lines

    def slow(path: Path, lines: list[str]) -> None:
        release.wait(30)
        append(path, lines)

    monkeypatch.setattr(audit_module, "append_lines", slow)
    return release


def lines_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


async def test_record_does_not_wait_for_a_stalled_disk(tmp_path: Path, stalled_disk: threading.Event) -> None:
    """While the disk is stalled, 200 decisions are recorded from the event loop and a heartbeat
    keeps ticking; once the disk answers, close() writes all 200 in order."""
    log = AuditLog(tmp_path / "audit.jsonl")
    ticks = 0

    async def heartbeat() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    beat = asyncio.create_task(heartbeat())
    for i in range(200):
        log.record("search", allowed=True, user_id=i)
        await asyncio.sleep(0)
    beat.cancel()
    assert ticks >= 150                           # the loop ran between records
    assert not (tmp_path / "audit.jsonl").exists()   # nothing could be written yet: it all waits in the queue
    stalled_disk.set()
    await asyncio.to_thread(log.close)
    assert [e["user"] for e in lines_of(tmp_path / "audit.jsonl")] == list(range(200))


def test_close_writes_every_queued_line_and_recording_resumes_after(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl")
    for i in range(1000):
        log.record("search", allowed=True, user_id=i)
    log.close()
    assert len(lines_of(tmp_path / "audit.jsonl")) == 1000
    log.record("search", allowed=False, reason="late")
    log.close()
    assert lines_of(tmp_path / "audit.jsonl")[-1]["reason"] == "late"


def test_a_write_failure_is_logged_not_raised(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A file that cannot be written (its folder vanished) costs a log line, never an exception."""
    log = AuditLog(tmp_path / "gone" / "audit.jsonl")
    with caplog.at_level(logging.ERROR, logger="bot.audit"):
        log.record("search", allowed=True)
        log.close()
    assert any("Could not write 1 line(s) to the audit log" in r.getMessage() for r in caplog.records)


def test_without_a_path_nothing_is_started(tmp_path: Path) -> None:
    log = AuditLog(None)
    log.record("search", allowed=True)
    assert log._writer is None
    log.close()


async def test_bot_close_flushes_the_audit_log(tmp_path: Path, collection_dir: Path,
                                               stalled_disk: threading.Event) -> None:
    """ImageBot.close() returns only when the lines queued before it are on disk."""
    path = tmp_path / "audit.jsonl"
    settings = Settings(discord_token="unused-token-value", collections=(CollectionSpec("sample", collection_dir),),
                        audit_log=path)
    bot = ImageBot(settings, Library([]))
    for i in range(50):
        bot.audit.record("search", allowed=True, user_id=i)
    threading.Timer(0.2, stalled_disk.set).start()
    await bot.close()
    assert len(lines_of(path)) == 50
