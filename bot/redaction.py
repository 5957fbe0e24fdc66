"""No secret reaches a log: the bot token and interaction tokens are redacted as each record is made.

Why a log record factory (`logging.setLogRecordFactory`) rather than a filter: every record that
any logger makes passes through the factory before a filter, handler or formatter sees it, so
the redaction also covers handlers added later (by a library, by the host, by pytest), loggers
that do not propagate to the root, and records whose message was never meant to hold a URL. A
filter on the root's handlers misses a handler a library attaches to its own logger later; a
filter on a logger misses the records its children propagate. The factory chains whatever
factory was installed before it.

What is scrubbed, per record: the message with its arguments already merged (so a secret hidden
in an argument's `str()` is caught, and the arguments are dropped), the exception (formatted into
`exc_text` now; `exc_info` is then cleared so no formatter can format the raw exception again)
and `stack_info`. Records built by `logging.makeLogRecord` (a socket handler's receiving side)
bypass factories; `RedactingFormatter` scrubs the final text of the bot's own handler as well.

Interaction tokens are not known in advance (one arrives with every interaction), so they are
found by shape: in `/webhooks/<id>/<token>` and `/interactions/<id>/<token>` URL paths (discord.py's
webhook adapter logs these at DEBUG), in a `token` field of a payload (its gateway logger prints
every INTERACTION_CREATE at DEBUG), on their own by their fixed prefix (base64 of
"interaction:"), and anything shaped like a bot token. Known secrets (this
bot's token) are replaced wherever they appear.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable

REDACTED = "[redacted]"

# /webhooks/<application id>/<token> and /interactions/<interaction id>/<token>: keep the ids.
# (Brackets are no token characters: a second pass leaves "[redacted]" as it is.)
_URL_TOKEN = re.compile(r"(/(?:webhooks|interactions)/\d+/)[^/\s?#'\"<>()\[\]]+")
# "token": "…" in JSON, 'token': '…' in a dict's repr (also access_token, webhook_token, …).
_FIELD_TOKEN = re.compile(r"""(['"][a-z_]*token['"]\s*:\s*['"])[^'"]*""", re.IGNORECASE)
# A bot token: base64 user id . base64 timestamp . HMAC (JWT-shaped strings are secrets too).
_BOT_TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{20,}\.[A-Za-z0-9_-]{6,}\.[A-Za-z0-9_-]{27,}")
# An interaction token on its own: Discord's begin with base64 of "interaction:".
_INTERACTION_TOKEN_SHAPE = re.compile(r"aW50ZXJhY3Rpb246[A-Za-z0-9_.=-]+")


class Redactor:
    """Replaces secrets in text: the known ones literally, interaction tokens by shape."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: set[str] = set()
        self._lock = threading.Lock()
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        with self._lock:
            # Very short strings would shred ordinary text and are no real token anyway.
            self._secrets |= {s for s in secrets if s and len(s) >= 8}

    def redact(self, text: str) -> str:
        for secret in sorted(self._secrets, key=len, reverse=True):
            if secret in text:
                text = text.replace(secret, REDACTED)
        text = _URL_TOKEN.sub(r"\1" + REDACTED, text)
        text = _FIELD_TOKEN.sub(r"\1" + REDACTED, text)
        text = _INTERACTION_TOKEN_SHAPE.sub(REDACTED, text)
        return _BOT_TOKEN_SHAPE.sub(REDACTED, text)

    def scrub(self, record: logging.LogRecord) -> None:
        """Redact a record in place: message (arguments merged), exception, stack."""
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken format must not leak its arguments later
            message = f"{record.msg} [unformattable arguments: {record.args!r}]"
        record.msg, record.args = self.redact(message), None
        if record.exc_info and record.exc_info[0] is not None:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_info:
            record.exc_info = None
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)


class RedactingFormatter(logging.Formatter):
    """The last guard on the bot's own handler: scrubs the formatted text as well."""

    def __init__(self, redactor: Redactor, fmt: str | None = None) -> None:
        super().__init__(fmt)
        self.redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        return self.redactor.redact(super().format(record))


_installed: tuple[Redactor, object, object] | None = None   # (redactor, previous factory, ours)
_install_lock = threading.Lock()


def install(secrets: Iterable[str] = ()) -> Redactor:
    """Redact every log record made from now on, in this process. Idempotent: a second call adds
    its secrets to the redactor already installed."""
    global _installed
    with _install_lock:
        if _installed is not None:
            _installed[0].add(secrets)
            return _installed[0]
        redactor = Redactor(secrets)
        previous = logging.getLogRecordFactory()

        def factory(*args: object, **kwargs: object) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            redactor.scrub(record)
            return record

        logging.setLogRecordFactory(factory)
        _installed = (redactor, previous, factory)
        return redactor


def uninstall() -> None:
    """Undo `install` (for tests); a factory installed on top of ours is left in place."""
    global _installed
    with _install_lock:
        if _installed is None:
            return
        _, previous, ours = _installed
        if logging.getLogRecordFactory() is ours:
            logging.setLogRecordFactory(previous)
        _installed = None
