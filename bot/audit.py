"""The audit log: one JSON line per decision (who, where, allowed or why refused).

Never the token, and never the prompt text: a refused prompt is exactly what must not be
repeated, so the log keeps its length and a short keyed hash. The key is random per process,
so the hash tells "the same prompt again" within a run without being a lookup table for
guessing short prompts offline.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import threading
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class AuditLog:
    """Appends JSON lines to a file; a write failure is logged, never raised at a user."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._key = secrets.token_bytes(16)
        self._lock = threading.Lock()

    def prompt_fields(self, prompt: str | None) -> dict[str, Any]:
        if not prompt:
            return {"prompt_len": 0}
        digest = hmac.new(self._key, prompt.encode("utf-8"), hashlib.sha256).hexdigest()[:16]
        return {"prompt_len": len(prompt), "prompt_hmac": digest}

    def record(self, event: str, *, allowed: bool, user_id: int | None = None, guild_id: int | None = None,
               channel_id: int | None = None, reason: str | None = None, prompt: str | None = None,
               **extra: Any) -> None:
        """Write one decision. `prompt` is reduced to prompt_fields(); `extra` must hold no secrets."""
        if self.path is None:
            return
        entry = {"time": round(time.time(), 3), "event": event, "allowed": allowed, "user": user_id,
                 "guild": guild_id, "channel": channel_id, "reason": reason,
                 **self.prompt_fields(prompt), **extra}
        line = json.dumps(entry, ensure_ascii=False, default=str) + "\n"
        try:
            with self._lock, open(self.path, "a", encoding="utf-8") as fh:
                fh.write(line)
        except OSError as exc:
            log.error("Could not write the audit log: %s", exc)
