"""No token in the log at DEBUG: the real entry point (`bot.__main__.main`, its own logging set-up)
runs in a process of its own against the fake Discord, with IMAGESEARCH_LOG_LEVEL=DEBUG, and is
driven through searches, pages, more-like-this, refusals and an error with a traceback. Then its
whole stderr (the log) and its audit log are searched for the bot token and for every interaction
token the fake issued.

The INFO cap on the URL-logging loggers is lifted in this run (`--debug-url-loggers`): discord.py's
webhook adapter then logs every follow-up URL with its token, so the test proves that the
redaction alone keeps them out. One process for the module: starting it costs a model load.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

from bot.redaction import REDACTED
from tests.fake_discord import FakeDiscord, FakeInteraction
from tests.fixtures.bot import results

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[1]
BLOCKED = "kill"


@dataclass
class Run:
    """What one DEBUG run of the bot left behind."""

    fake: FakeDiscord
    log: str
    audit: str
    exit_code: int
    error_ref: str


async def _private_text(inter: FakeInteraction) -> str:
    while True:
        msg = await inter.wait_followup(60)
        if msg.content and not msg.content.startswith("Posting"):
            assert msg.ephemeral
            return msg.content


async def _wait_for_line(path: Path, text: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while text not in path.read_text(encoding="utf-8", errors="replace"):
        if proc.poll() is not None:
            raise AssertionError(f"the bot exited ({proc.returncode}):\n{path.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {text!r} in the bot's log within {timeout} s")
        await asyncio.sleep(0.2)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def run(collection_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Run:
    work = tmp_path_factory.mktemp("debug-run")
    (work / "blocklist.txt").write_text(BLOCKED + "\n", encoding="utf-8")
    log_path, audit_path = work / "stderr.log", work / "audit.jsonl"
    async with FakeDiscord() as fake:
        lab = fake.add_guild("Lab", channels=["research", "general"])
        await fake.add_thread(lab, "ideas", "research")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "IMAGESEARCH_"))}
        env.update(PYTHONPATH=str(REPO), DISCORD_TOKEN=fake.token, IMAGESEARCH_COLLECTION=str(collection_dir),
                   IMAGESEARCH_ALLOWED_GUILDS=str(lab.id), IMAGESEARCH_ALLOWED_CHANNELS=str(lab.channels["research"]),
                   IMAGESEARCH_DEVICE="cpu", IMAGESEARCH_LOG_LEVEL="DEBUG", IMAGESEARCH_RATE_LIMIT="3/60",
                   IMAGESEARCH_BLOCKLIST=str(work / "blocklist.txt"), IMAGESEARCH_AUDIT_LOG=str(audit_path))
        with open(log_path, "wb") as err:  # noqa: ASYNC230 - once, before the bot starts
            command = [sys.executable, "-m", "tests.fake_discord.run_bot", *fake.bot_process_args(),
                       "--debug-url-loggers"]
            # A long-lived process, waited for in a thread at the end.
            proc = subprocess.Popen(command, cwd=work, env=env, stdout=err, stderr=err)  # noqa: ASYNC220
        try:
            await _wait_for_line(log_path, "Logged in as", proc, timeout=240)
            alice, bob, carol, dave = (fake.add_user(n) for n in ("alice", "bob", "carol", "dave"))

            # Searches and pages (alice spends her 3 actions, then "more like this" is refused).
            msg = await results(await fake.slash_command("imagesearch", {"prompt": "a ship", "k": 3},
                                                          user=alice, guild=lab, channel="research"))
            for action in ("next", "prev"):
                press = await fake.press_button(msg, next(c for c in msg.custom_ids if c.endswith(action)),
                                                user=alice)
                msg = await press.wait_followup(60)
            select = msg.selects[0]
            more = await fake.choose_option(msg, select["custom_id"], select["options"][0]["value"], user=alice)
            assert "too fast" in (await more.wait_response()).message.content
            # A search in a thread, and "more like this" that works (bob).
            msg = await results(await fake.slash_command("imagesearch", {"prompt": "birds", "k": 2},
                                                          user=bob, guild=lab, channel="ideas"))
            select = msg.selects[0]
            await results(await fake.choose_option(msg, select["custom_id"], select["options"][0]["value"],
                                                    user=bob))
            # Refusals: a blocked term, a channel outside the allowlist, someone else's pager.
            blocked = await fake.slash_command("imagesearch", {"prompt": f"{BLOCKED} the dragon"}, user=carol,
                                               guild=lab, channel="research")
            assert (await blocked.wait_response()).ephemeral
            elsewhere = await fake.slash_command("imagesearch", {"prompt": "a ship"}, user=carol, guild=lab,
                                                 channel="general")
            assert (await elsewhere.wait_response()).ephemeral
            not_yours = await fake.press_button(msg, msg.custom_ids[-1], user=carol)
            assert (await not_yours.wait_response()).ephemeral
            # An error with a traceback whose text holds the follow-up URL (as aiohttp's errors do).
            fake.fail_next("POST", r"^/webhooks/\d+/[^/]+$", status=400, message="Invalid Form Body at {path}")
            failed = await fake.slash_command("imagesearch", {"prompt": "a castle", "k": 2}, user=dave, guild=lab,
                                              channel="research")
            reply = await _private_text(failed)
            assert reply.startswith("Something went wrong (ref ")
            error_ref = reply.split("ref ")[1][:4]
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
            try:
                exit_code = await asyncio.to_thread(proc.wait, 60)
            except subprocess.TimeoutExpired:
                proc.kill()
                raise
        return Run(fake, log_path.read_text(encoding="utf-8", errors="replace"),
                   audit_path.read_text(encoding="utf-8") if audit_path.exists() else "", exit_code, error_ref)


def _tokens(run: Run) -> list[str]:
    tokens = [run.fake.token] + [inter.token for inter in run.fake.interactions.values()]
    assert len(tokens) == 11    # the bot token and the ten interactions of this run
    return tokens


async def test_the_debug_log_is_real(run: Run) -> None:
    """The log really holds what could leak: DEBUG lines of the webhook adapter (follow-up URLs), the
    gateway (interaction payloads) and the HTTP client, the error's traceback, with redactions in them."""
    log = run.log
    assert run.exit_code == 0, log[-3000:]
    for logger in ("discord.webhook.async_", "discord.gateway", "discord.http"):
        assert f"DEBUG    {logger}:" in log, logger
    assert "INTERACTION_CREATE" in log and "Traceback" in log and f"ref {run.error_ref}" in log
    assert f"/webhooks/{run.fake.application_id}/{REDACTED}" in log
    assert "/interactions/" in log and f"'token': '{REDACTED}'" in log


async def test_no_token_anywhere_in_the_log(run: Run) -> None:
    """Neither the bot token nor any of the interaction tokens the fake issued appears in the log."""
    leaked = [t for t in _tokens(run) if t in run.log]
    assert leaked == []


async def test_no_token_in_the_audit_log(run: Run) -> None:
    entries = [json.loads(line) for line in run.audit.splitlines()]
    assert {e["event"] for e in entries} >= {"search", "more_like_this", "access"}
    assert not any(t in run.audit for t in _tokens(run))


async def test_the_bot_logged_no_token_shaped_url_in_any_form(run: Run) -> None:
    """Every webhook or interaction URL in the log has its token part redacted."""
    import re

    parts = re.findall(r"/(?:webhooks|interactions)/\d+/([^/\s'\"?]+)", run.log)
    assert parts and set(parts) == {REDACTED}
