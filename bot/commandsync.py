"""Slash commands are registered per allowed guild, never globally, and only written when changed.

Why per guild: guild commands show up at once (global ones can take up to an hour to spread) and
only where the bot may work. Global copies left by an older version are removed, so no server
shows /imagesearch twice. With IMAGESEARCH_DEV_GUILD set, only that guild is synced: a test
server can try changed commands while the other allowed guilds keep theirs.

Why compare first: Discord rate-limits command writes (200 command creates a day per guild), and a
bot that is restarted often would spend them for nothing. Before writing, the commands Discord
has (GET) are compared with what the tree would send, normalised (`canonical`): the fields
Discord fills in or ignores for guild commands do not count, and a default written out equals a
default left out. A restart with unchanged commands writes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands

if TYPE_CHECKING:
    from bot.client import ImageBot

log = logging.getLogger(__name__)

# Set by Discord (ids, versions) or meaningful only for global commands (contexts, dm_permission,
# integration_types): never part of the comparison for a guild command.
IGNORED_FIELDS = frozenset({"id", "application_id", "version", "guild_id", "dm_permission", "contexts",
                            "integration_types", "name_localized", "description_localized"})
# What Discord assumes when a field is left out (Discord API docs, Application Commands).
COMMAND_DEFAULTS: dict[str, Any] = {"type": 1, "nsfw": False}
OPTION_DEFAULTS: dict[str, Any] = {"required": False, "autocomplete": False}


def _is_unset(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def canonical(data: dict[str, Any], defaults: dict[str, Any] = COMMAND_DEFAULTS) -> dict[str, Any]:
    """A command (or option, or choice) as comparable data: ignored fields, empty values and
    defaults dropped, nested options and choices normalised the same way (their order counts)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key in IGNORED_FIELDS or _is_unset(value) or defaults.get(key, object()) == value:
            continue
        if key in ("options", "choices"):
            value = [canonical(item, OPTION_DEFAULTS) for item in value]
        out[key] = value
    return out


def same_commands(wanted: Iterable[dict[str, Any]], registered: Iterable[dict[str, Any]]) -> bool:
    """True when Discord already has exactly the wanted commands (none missing, none extra)."""
    def keyed(commands: Iterable[dict[str, Any]]) -> dict[tuple[Any, Any], dict[str, Any]]:
        return {(c.get("type", 1), c.get("name")): canonical(c) for c in commands}

    return keyed(wanted) == keyed(registered)


class CommandSyncError(Exception):
    """A sync at start-up failed; the message is one line for the operator (describe_sync_error)."""


def describe_sync_error(exc: discord.HTTPException, guild_id: int | None) -> str:
    """One line for the operator: what failed and what to change."""
    where = f" in server {guild_id}" if guild_id is not None else ""
    if isinstance(exc, discord.Forbidden):
        return (f"Discord refused to register the slash commands{where} (403): the bot was invited without "
                "the applications.commands scope; invite it again with the link in the README.")
    if isinstance(exc, app_commands.CommandSyncFailure) or exc.status == 400:
        return (f"Discord rejected the slash command definitions{where} (400: {exc.text or 'invalid form'}); "
                "this version of the bot has a bug: report it with this line.")
    if isinstance(exc, discord.DiscordServerError):
        return (f"Discord's API failed while registering the slash commands{where} ({exc.status}); "
                "start the bot again in a few minutes.")
    return (f"Discord refused to register the slash commands{where} ({exc.status}: "
            f"{exc.text or type(exc).__name__}); check the bot's application in the developer portal.")


class CommandSync:
    """Keeps Discord's copy of the commands in step with the bot's tree, per guild."""

    def __init__(self, bot: ImageBot) -> None:
        self.bot = bot

    @property
    def targets(self) -> frozenset[int]:
        """Guilds that get the commands: the dev guild alone when set, else every allowed guild."""
        settings = self.bot.settings
        if settings.dev_guild_id is not None:
            return frozenset({settings.dev_guild_id})
        return settings.allowed_guilds

    async def wanted(self, guild: discord.abc.Snowflake) -> list[dict[str, Any]]:
        """The payload tree.sync(guild=…) would send, once the global commands are copied there."""
        tree = self.bot.tree
        tree.copy_global_to(guild=guild)
        translator = tree.translator
        commands = tree.get_commands(guild=guild)
        if translator is not None:
            return [await command.get_translated_payload(tree, translator) for command in commands]
        return [command.to_dict(tree) for command in commands]

    async def sync_guild(self, guild_id: int) -> bool:
        """Write the guild's commands if Discord's differ; True when a write was made."""
        guild = discord.Object(id=guild_id)
        wanted = await self.wanted(guild)
        registered = await self.bot.http.get_guild_commands(self.bot.application_id, guild_id)
        if same_commands(wanted, registered):
            log.info("Slash commands in server %s are up to date", guild_id)
            return False
        synced = await self.bot.tree.sync(guild=guild)
        log.info("Synced %d slash command(s) to server %s", len(synced), guild_id)
        return True

    async def remove_global(self) -> bool:
        """Delete global commands (left by an older version, or another tool); True when any were."""
        registered = await self.bot.http.get_global_commands(self.bot.application_id)
        if not registered:
            return False
        await self.bot.http.bulk_upsert_global_commands(self.bot.application_id, payload=[])
        log.info("Removed %d global slash command(s); the bot registers its commands per server",
                 len(registered))
        return True

    async def sync_all(self) -> None:
        """At start-up: remove global copies, then sync every target guild the bot is in. Targets it
        is not in yet are synced when it is added (`sync_joined`). Raises CommandSyncError."""
        try:
            await self.remove_global()
            member_of = {guild.id async for guild in self.bot.fetch_guilds(limit=None)}
        except discord.HTTPException as exc:
            raise CommandSyncError(describe_sync_error(exc, None)) from exc
        for guild_id in sorted(self.targets):
            if guild_id in member_of:
                try:
                    await self.sync_guild(guild_id)
                except discord.HTTPException as exc:
                    raise CommandSyncError(describe_sync_error(exc, guild_id)) from exc
            else:
                log.info("Not in server %s yet: its slash commands are registered when the bot is added",
                         guild_id)

    async def sync_joined(self, guild: discord.Guild) -> None:
        """The bot was added to a guild: register the commands there if it is a target. Errors are
        logged (the bot is running; the other guilds keep working)."""
        if guild.id not in self.targets:
            return
        try:
            await self.sync_guild(guild.id)
        except discord.HTTPException as exc:
            log.error("%s", describe_sync_error(exc, guild.id))
