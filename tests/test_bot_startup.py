"""Start-up: commands synced per allowed guild (and only when changed), and every start-up failure
ends in one line naming what to change and a non-zero exit, never a traceback."""

from __future__ import annotations

import asyncio
import socket
import types
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import discord.http
import pytest
import torch

from bot import client as client_module
from bot.__main__ import EXIT_CONFIG, EXIT_UNREACHABLE, main
from bot.client import ImageBot, StartupError
from bot.library import Library
from bot.settings import CollectionSpec, Settings
from tests.fake_discord import FakeDiscord
from tests.fake_discord.models import snowflake

pytestmark = pytest.mark.timeout(90)


def _settings(fake: FakeDiscord, collection_dir, **extra) -> Settings:
    return Settings(discord_token=fake.token, collections=(CollectionSpec("sample", collection_dir),), device="cpu",
                    **extra)


def _command_writes(fake: FakeDiscord, since: int = 0) -> list:
    return [r for r in fake.requests[since:] if r.method in ("PUT", "POST", "PATCH", "DELETE")
            and "/commands" in r.path]


@asynccontextmanager
async def running(fake: FakeDiscord, settings: Settings) -> AsyncIterator[ImageBot]:
    """The real bot core (no model: these tests never search), started and ready, then closed."""
    bot = ImageBot(settings, Library([]), guild_ready_timeout=0.05)
    task = asyncio.create_task(bot.start(fake.token))
    try:
        await asyncio.wait_for(bot.wait_until_ready(), 20)
        yield bot
    finally:
        await bot.close()
        await asyncio.wait_for(task, 10)


def _old_global_command(fake: FakeDiscord) -> None:
    """What an older version left behind: /imagesearch registered globally."""
    fake.registered_commands.setdefault(None, {})["imagesearch"] = {
        "id": str(snowflake()), "application_id": str(fake.application_id), "version": str(snowflake()),
        "type": 1, "name": "imagesearch", "description": "old", "options": []}


def _names(fake: FakeDiscord, guild_id: int | None) -> list[str]:
    return sorted(c["name"] for c in fake.commands(guild_id))


# --- Command sync -------------------------------------------------------------------------------

async def test_commands_go_to_each_allowed_guild_and_stale_globals_are_removed(collection_dir) -> None:
    """First start: each allowed guild has exactly one /imagesearch, the old global copy is gone
    (so no server shows it twice), and a guild that is not allowed gets nothing."""
    async with FakeDiscord() as fake:
        fake.install()
        lab, annex, stranger = fake.add_guild("Lab"), fake.add_guild("Annex"), fake.add_guild("Stranger")
        _old_global_command(fake)
        settings = _settings(fake, collection_dir, allowed_guilds=frozenset({lab.id, annex.id}))
        async with running(fake, settings):
            pass
        assert fake.commands() == []
        assert _names(fake, lab.id) == _names(fake, annex.id) == ["imagesearch"]
        assert fake.commands(stranger.id) == []
        assert [r.json for r in _command_writes(fake) if r.path.endswith(f"{fake.application_id}/commands")] == [[]]


async def test_an_unchanged_restart_writes_nothing_and_a_change_is_written(collection_dir) -> None:
    """Discord rate-limits command writes: a restart with the same commands makes no write at all;
    a guild whose copy differs (edited elsewhere, an older version) is rewritten, and only it."""
    async with FakeDiscord() as fake:
        fake.install()
        lab, annex = fake.add_guild("Lab"), fake.add_guild("Annex")
        settings = _settings(fake, collection_dir, allowed_guilds=frozenset({lab.id, annex.id}))
        async with running(fake, settings):
            pass
        first = _command_writes(fake)
        assert len(first) == 2
        before = len(fake.requests)
        async with running(fake, settings):
            pass
        assert _command_writes(fake, before) == []
        assert any(r.method == "GET" and r.path.endswith(f"/guilds/{lab.id}/commands") for r in fake.requests[before:])

        k_option = next(o for o in fake.registered_commands[annex.id]["imagesearch"]["options"] if o["name"] == "k")
        k_option["max_value"] = 10   # k capped at 10
        before = len(fake.requests)
        async with running(fake, settings):
            pass
        (write,) = _command_writes(fake, before)
        assert write.method == "PUT" and write.path.endswith(f"/guilds/{annex.id}/commands")
        assert next(o for o in fake.commands(annex.id)[0]["options"] if o["name"] == "k")["max_value"] == 25


async def test_a_guild_allowlisted_before_the_bot_joins_gets_commands_when_it_joins(collection_dir) -> None:
    """An allowed guild the bot is not in yet is no start-up error; it gets /imagesearch the moment
    the bot is added to it."""
    async with FakeDiscord() as fake:
        fake.install()
        lab, later_id = fake.add_guild("Lab"), snowflake()
        settings = _settings(fake, collection_dir, allowed_guilds=frozenset({lab.id, later_id}))
        async with running(fake, settings):
            assert fake.commands(later_id) == []
            await fake.add_guild_later("Joined later", guild_id=later_id)
            for _ in range(100):
                if fake.commands(later_id):
                    break
                await asyncio.sleep(0.05)
            assert _names(fake, later_id) == ["imagesearch"]
            assert later_id not in fake.left_guilds


async def test_with_a_dev_guild_only_that_guild_is_synced(collection_dir) -> None:
    """IMAGESEARCH_DEV_GUILD: changed commands are tried in one server; other allowed servers keep theirs."""
    async with FakeDiscord() as fake:
        fake.install()
        lab, dev = fake.add_guild("Lab"), fake.add_guild("Dev")
        _old_global_command(fake)
        settings = _settings(fake, collection_dir, allowed_guilds=frozenset({lab.id, dev.id}), dev_guild_id=dev.id)
        async with running(fake, settings):
            pass
        assert _names(fake, dev.id) == ["imagesearch"]
        assert fake.commands(lab.id) == [] and fake.commands() == []


# --- Start-up failures, through the bot core ------------------------------------------------------

async def test_a_failed_extension_stops_start_up_without_syncing(collection_dir, monkeypatch):
    """An extension that fails to load raises StartupError before any command sync: syncing then
    would replace /imagesearch everywhere with an empty command set."""
    monkeypatch.setattr(client_module, "EXTENSIONS", ("bot.cogs.guard", "bot.cogs.no_such_cog"))
    async with FakeDiscord() as fake:
        fake.install()
        fake.add_guild("Lab")
        bot = ImageBot(_settings(fake, collection_dir), Library([]), guild_ready_timeout=0.05)
        with pytest.raises(StartupError, match="bot.cogs.no_such_cog"):
            await asyncio.wait_for(bot.start(fake.token), 20)
        await bot.close()
        assert _command_writes(fake) == []


async def test_a_refused_sync_names_the_likely_cause(collection_dir):
    """Discord refusing the command sync (403) becomes one StartupError naming the server and the
    applications.commands scope, not a traceback."""
    async with FakeDiscord() as fake:
        fake.install()
        lab = fake.add_guild("Lab")
        fake.fail_next("PUT", r"/commands", status=403)
        settings = _settings(fake, collection_dir, allowed_guilds=frozenset({lab.id}))
        bot = ImageBot(settings, Library([]), guild_ready_timeout=0.05)
        with pytest.raises(StartupError, match="applications.commands") as err:
            await asyncio.wait_for(bot.start(fake.token), 20)
        assert str(lab.id) in str(err.value)
        await bot.close()


# --- Start-up failures, through the entry point ----------------------------------------------------

def _env(collection_dir: Path, token: str, **extra: str) -> dict[str, str]:
    return {"DISCORD_TOKEN": token, "IMAGESEARCH_COLLECTION": str(collection_dir), "IMAGESEARCH_DEVICE": "cpu",
            **extra}


def _one_line(capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> str:
    """The single `imagesearch bot:` line on stderr; no traceback on stderr or in the log."""
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err + caplog.text
    lines = [line for line in err.splitlines() if line.startswith("imagesearch bot:")]
    assert len(lines) == 1, err
    return lines[0]


class _FastRetries(types.ModuleType):
    """discord.http's view of asyncio with sleeps shortened: it retries a 500 five times over 25 s."""

    def __getattr__(self, name: str):
        return getattr(asyncio, name)

    @staticmethod
    async def sleep(delay: float, result=None):
        return await asyncio.sleep(min(delay, 0.01), result)


@pytest.mark.parametrize("status", [400, 404, 500, 503])
async def test_any_sync_error_ends_in_one_line_and_a_non_zero_exit(collection_dir, status, monkeypatch,
                                                                     capfd, caplog) -> None:
    """Not only 403: a 400 (bad definitions), 404, 500 (after discord.py's retries) or 503 while
    registering the commands stops the bot with one line naming what to do."""
    monkeypatch.setattr(discord.http, "asyncio", _FastRetries("asyncio"))
    async with FakeDiscord() as fake:
        fake.install()
        lab = fake.add_guild("Lab")
        fake.fail_next("PUT", r"/guilds/\d+/commands", status=status, times=5)
        code = await asyncio.to_thread(main, _env(collection_dir, fake.token,
                                                  IMAGESEARCH_ALLOWED_GUILDS=str(lab.id)))
    line = _one_line(capfd, caplog)
    assert code == EXIT_CONFIG
    assert "slash command" in line and str(status) in line and str(lab.id) in line
    assert fake.token not in line


@pytest.mark.parametrize("failure", ["refused", "dns"])
def test_no_network_ends_in_one_line_and_a_non_zero_exit(collection_dir, monkeypatch, capfd, caplog,
                                                         failure) -> None:
    """Discord unreachable (connection refused: a closed port on 127.0.0.1; or a name that does not
    resolve) is one line naming the network, exit 3."""
    if failure == "refused":
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        monkeypatch.setattr(discord.http.Route, "BASE", f"http://127.0.0.1:{port}/api/v10")
    else:
        host, getaddrinfo = "discord.imagesearch-test.invalid", socket.getaddrinfo

        def no_dns(name, *args, **kwargs):   # as on a machine without DNS, without waiting for one
            if name == host:
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
            return getaddrinfo(name, *args, **kwargs)

        monkeypatch.setattr(socket, "getaddrinfo", no_dns)
        monkeypatch.setattr(discord.http.Route, "BASE", f"http://{host}/api/v10")
    token = "MTIz.not-a-real-token-for-this-test"
    code = main(_env(collection_dir, token))
    line = _one_line(capfd, caplog)
    assert code == EXIT_UNREACHABLE
    assert "could not reach Discord" in line and "network" in line and token not in line


@pytest.mark.parametrize(("device", "cuda_gpus", "words"), [
    ("mps", 0, "mps is not available"),
    ("cuda", 0, "no CUDA GPU"),
    ("cuda:0", 0, "no CUDA GPU"),
    ("cuda:2", 1, "has 1 CUDA GPU(s), cuda:0 to cuda:0"),
])
def test_an_absent_device_ends_in_one_line_before_loading_anything(collection_dir, monkeypatch, capfd, caplog,
                                                                    device, cuda_gpus, words) -> None:
    """IMAGESEARCH_DEVICE naming an accelerator this machine lacks: one line naming the variable and
    the way out, exit 2, and neither the collection nor the model is opened first."""
    from search_core.search import SearchService

    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda_gpus > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: cuda_gpus)

    def never(*args, **kwargs):
        raise AssertionError("the model was loaded before the device was checked")

    monkeypatch.setattr(SearchService, "open", never)
    code = main(_env(collection_dir, "MTIz.unused-token", IMAGESEARCH_DEVICE=device))
    line = _one_line(capfd, caplog)
    assert code == EXIT_CONFIG
    assert line.startswith("imagesearch bot: IMAGESEARCH_DEVICE:") and words in line
