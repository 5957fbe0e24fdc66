"""Secrets never reach a log record: bot/redaction.py, installed as the log record factory.

The end-to-end proof (the real entry point at DEBUG against the fake Discord) is in
tests/test_bot_debug_log.py; these tests pin each way a token could slip into a record.
"""

from __future__ import annotations

import io
import logging
import secrets
from collections.abc import Iterator

import pytest

from bot import redaction

BOT_TOKEN = "MTA5" + secrets.token_urlsafe(20) + "." + secrets.token_urlsafe(5) + "." + secrets.token_urlsafe(28)
# Not Discord's token shape (that is caught by its prefix): these prove the URL and field patterns.
ITOKEN = "itoken." + secrets.token_urlsafe(40)
REAL_SHAPED_ITOKEN = "aW50ZXJhY3Rpb246MTIzNDU2Nzg5MDEyMzQ1Njc4O" + secrets.token_urlsafe(40)
WEBHOOK_URL = f"https://discord.com/api/v10/webhooks/1234567890123/{ITOKEN}/messages/@original"
CALLBACK_URL = f"https://discord.com/api/v10/interactions/987654321098/{ITOKEN}/callback"


@pytest.fixture
def redacted() -> Iterator[redaction.Redactor]:
    redactor = redaction.install([BOT_TOKEN])
    try:
        yield redactor
    finally:
        redaction.uninstall()


def capture(name: str, *, propagate: bool = True) -> tuple[logging.Logger, io.StringIO, logging.Handler]:
    """A logger with a handler of its own, added after redaction was installed."""
    logger = logging.getLogger(name)
    logger.setLevel(logging.DEBUG)
    logger.propagate = propagate
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(name)s %(message)s"))
    logger.addHandler(handler)
    return logger, out, handler


def assert_clean(text: str) -> None:
    assert ITOKEN not in text and BOT_TOKEN not in text
    assert redaction.REDACTED in text


@pytest.mark.parametrize("url", [WEBHOOK_URL, CALLBACK_URL])
def test_token_urls_in_arguments_are_redacted_for_a_late_non_propagating_logger(redacted, url) -> None:
    """discord.py's webhook adapter logs URLs as %s arguments at DEBUG; a handler added later to a
    logger that does not propagate still gets the redacted text, ids kept."""
    logger, out, handler = capture("test.redaction.late", propagate=False)
    try:
        logger.debug("Webhook ID %s with %s %s has returned status code %s", 1, "POST", url, 200)
    finally:
        logger.removeHandler(handler)
    assert_clean(out.getvalue())
    assert "/1234567890123/" in out.getvalue() or "/987654321098/" in out.getvalue()


def test_interaction_payload_repr_is_redacted(redacted) -> None:
    """discord.gateway prints each event's dict at DEBUG; the token field is redacted."""
    logger, out, handler = capture("test.redaction.gateway")
    payload = {"t": "INTERACTION_CREATE", "d": {"id": "1", "token": ITOKEN, "type": 2}}
    try:
        logger.debug("For Shard ID %s: WebSocket Event: %s", None, payload)
        logger.debug("raw %s", f'{{"token": "{ITOKEN}"}}')
    finally:
        logger.removeHandler(handler)
    assert_clean(out.getvalue())
    assert "INTERACTION_CREATE" in out.getvalue()


def test_bot_token_in_an_arguments_str_is_redacted(redacted) -> None:
    """A secret that only appears when an argument is turned into text is caught too."""
    class Header:
        def __str__(self) -> str:
            return f"Authorization: Bot {BOT_TOKEN}"

    logger, out, handler = capture("test.redaction.str")
    try:
        logger.info("headers %s", Header())
    finally:
        logger.removeHandler(handler)
    assert_clean(out.getvalue())


def test_an_unknown_token_of_bot_token_shape_is_redacted(redacted) -> None:
    """A second token (pasted into the wrong variable, say) is caught by its shape."""
    other = "ODk" + secrets.token_urlsafe(21) + "." + secrets.token_urlsafe(5) + "." + secrets.token_urlsafe(29)
    logger, out, handler = capture("test.redaction.shape")
    try:
        logger.warning("got %s", other)
    finally:
        logger.removeHandler(handler)
    assert other not in out.getvalue() and redaction.REDACTED in out.getvalue()


def test_exception_text_and_chained_causes_are_redacted(redacted) -> None:
    """A traceback logged with exc_info (aiohttp errors print their URL) is redacted, causes included."""
    logger, out, handler = capture("test.redaction.exc")
    try:
        try:
            try:
                raise OSError(f"Cannot connect to {WEBHOOK_URL}")
            except OSError as inner:
                raise RuntimeError(f"follow-up to {CALLBACK_URL} failed") from inner
        except RuntimeError:
            logger.exception("send failed")
    finally:
        logger.removeHandler(handler)
    text = out.getvalue()
    assert_clean(text)
    assert "Traceback" in text and "OSError" in text and "RuntimeError" in text


def test_records_handed_to_other_handlers_carry_no_raw_exception(redacted) -> None:
    """exc_info is cleared after formatting, so a formatter of its own cannot re-format the raw text."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("test.redaction.raw")
    handler = Keep()
    logger.addHandler(handler)
    try:
        try:
            raise ValueError(REAL_SHAPED_ITOKEN)
        except ValueError:
            logger.exception("boom %s", REAL_SHAPED_ITOKEN, stack_info=True)
    finally:
        logger.removeHandler(handler)
    (record,) = records
    assert record.exc_info is None and record.args is None
    for text in (record.msg, record.exc_text, record.stack_info, record.getMessage()):
        assert REAL_SHAPED_ITOKEN not in text


def test_stack_info_is_redacted(redacted) -> None:
    logger, out, handler = capture("test.redaction.stack")
    try:
        def deep(url: str) -> None:
            logger.debug("here", stack_info=True)
        deep(WEBHOOK_URL)
        logger.debug(f"inline {WEBHOOK_URL}", stack_info=True)
    finally:
        logger.removeHandler(handler)
    assert ITOKEN not in out.getvalue() and "Stack (most recent call last)" in out.getvalue()


def test_broken_format_arguments_are_redacted_not_leaked(redacted) -> None:
    """A record whose arguments do not fit its format string still never shows a token."""
    logger, out, handler = capture("test.redaction.broken")
    try:
        logger.info("one %s two %s", WEBHOOK_URL)  # noqa: PLE1206 - the mismatch is the point
    finally:
        logger.removeHandler(handler)
    assert ITOKEN not in out.getvalue() and "unformattable" in out.getvalue()


def test_install_is_idempotent_and_uninstall_restores_the_factory() -> None:
    before = logging.getLogRecordFactory()
    first = redaction.install(["first-secret-value"])
    second = redaction.install(["second-secret-value"])
    try:
        assert first is second
        assert first.redact("a first-secret-value b second-secret-value") == "a [redacted] b [redacted]"
    finally:
        redaction.uninstall()
    assert logging.getLogRecordFactory() is before


def test_ordinary_text_is_left_alone(redacted) -> None:
    """File names, ids and prose pass unchanged."""
    text = ("000499442_0_000579_1_[The Ring and the Book  etc ]_1920.jpg rank 3 in guild 123456789012345678 "
            "took 0.25 s; tokens=12")
    assert redacted.redact(text) == text


def test_redacting_twice_changes_nothing(redacted) -> None:
    """The record factory and the bot's formatter both redact: the second pass must be a no-op."""
    text = f"POST {WEBHOOK_URL} {{'token': '{ITOKEN}'}} Bot {BOT_TOKEN} {CALLBACK_URL}"
    once = redacted.redact(text)
    assert redacted.redact(once) == once
    assert once.count(redaction.REDACTED) == 4 and "]]" not in once
