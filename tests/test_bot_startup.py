"""Start-up failures stop the bot with one line and never wipe the registered commands."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from bot import client as client_module
from bot.client import ImageBot, StartupError
from bot.settings import Settings
from tests.fake_discord import FakeDiscord


def _settings(fake: FakeDiscord, collection_dir, **extra) -> Settings:
    return Settings(discord_token=fake.token, collection_dir=collection_dir, device="cpu", **extra)


def _command_writes(fake: FakeDiscord) -> list:
    return [r for r in fake.requests if r.method == "PUT" and "/commands" in r.path]


async def test_a_failed_extension_stops_start_up_without_syncing(collection_dir, monkeypatch):
    """An extension that fails to load raises StartupError before any command sync: syncing then
    would replace /imagesearch everywhere with an empty command set."""
    monkeypatch.setattr(client_module, "EXTENSIONS", ("bot.cogs.guard", "bot.cogs.no_such_cog"))
    service = SimpleNamespace(encoder=None)
    async with FakeDiscord() as fake:
        fake.install()
        fake.add_guild("Lab")
        bot = ImageBot(_settings(fake, collection_dir), service, None, guild_ready_timeout=0.05)
        with pytest.raises(StartupError, match="bot.cogs.no_such_cog"):
            await asyncio.wait_for(bot.start(fake.token), 20)
        await bot.close()
        assert _command_writes(fake) == []


async def test_a_refused_sync_names_the_likely_cause(collection_dir):
    """Discord refusing the command sync (403) becomes one StartupError naming the dev guild and
    the applications.commands scope, not a traceback."""
    async with FakeDiscord() as fake:
        fake.install()
        lab = fake.add_guild("Lab")
        fake.fail_next("PUT", r"/commands", status=403)
        settings = _settings(fake, collection_dir, allowed_guilds=frozenset({lab.id}), dev_guild_id=lab.id)
        bot = ImageBot(settings, SimpleNamespace(encoder=None), None, guild_ready_timeout=0.05)
        with pytest.raises(StartupError, match="applications.commands") as err:
            await asyncio.wait_for(bot.start(fake.token), 20)
        assert "IMAGESEARCH_DEV_GUILD" in str(err.value)
        await bot.close()
