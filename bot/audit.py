"""The audit log: one JSON line per decision (who, where, allowed or why refused).

Never the token, and never the prompt text: a refused prompt is exactly what must not be
repeated, so the log keeps its length and a short keyed hash. The key is random per process,
so the hash tells "the same prompt again" within a run without being a lookup table for
guessing short prompts offline.

Decisions are made on the event loop; the file is written by a thread of its own behind a
queue, so a slow disk (a network share, a full journal) never holds up the gateway or other
users. `close()`, called by `ImageBot.close`, writes every queued line before it returns.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import queue
import secrets
import threading
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_STOP = object()


def append_lines(path: Path, lines: list[str]) -> None:
    """One open per batch: a log rotated away by logrotate is followed by a fresh file."""
    with open(path, "a", encoding="utf-8") as fh:
        fh.writelines(lines)


class _Writer:
    """One writer thread and its queue; it writes whatever is queued, in batches, until stopped."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._run, name="imagesearch-audit", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            batch = [self.queue.get()]
            while True:
                try:
                    batch.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            lines = [item for item in batch if isinstance(item, str)]
            if lines:
                try:
                    append_lines(self.path, lines)
                except OSError as exc:
                    log.error("Could not write %d line(s) to the audit log: %s", len(lines), exc)
            if any(item is _STOP for item in batch):
                return


class AuditLog:
    """Appends JSON lines to a file off the event loop; a write failure is logged, never raised."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._key = secrets.token_bytes(16)
        self._lock = threading.Lock()
        self._writer: _Writer | None = None

    def prompt_fields(self, prompt: str | None) -> dict[str, Any]:
        if not prompt:
            return {"prompt_len": 0}
        digest = hmac.new(self._key, prompt.encode("utf-8"), hashlib.sha256).hexdigest()[:16]
        return {"prompt_len": len(prompt), "prompt_hmac": digest}

    def record(self, event: str, *, allowed: bool, user_id: int | None = None, guild_id: int | None = None,
               channel_id: int | None = None, reason: str | None = None, prompt: str | None = None,
               **extra: Any) -> None:
        """Queue one decision (returns at once). `prompt` is reduced to prompt_fields(); `extra`
        must hold no secrets."""
        if self.path is None:
            return
        entry = {"time": round(time.time(), 3), "event": event, "allowed": allowed, "user": user_id,
                 "guild": guild_id, "channel": channel_id, "reason": reason,
                 **self.prompt_fields(prompt), **extra}
        line = json.dumps(entry, ensure_ascii=False, default=str) + "\n"
        with self._lock:
            if self._writer is None:   # first line, or the first after close()
                self._writer = _Writer(self.path)
            self._writer.queue.put(line)

    def close(self, timeout: float = 10.0) -> None:
        """Write every queued line, then stop the writer thread. Blocks up to `timeout` seconds."""
        with self._lock:
            writer, self._writer = self._writer, None
        if writer is None:
            return
        writer.queue.put(_STOP)
        writer.thread.join(timeout)
        if writer.thread.is_alive():
            log.error("The audit log writer did not finish within %.0f s; its last lines may be missing", timeout)
