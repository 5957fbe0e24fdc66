"""Where the bot may work: allowlisted guilds (it leaves any other) and optional channels.

The allowlist is enforced twice on purpose: leaving a guild stops new invitations from being
useful, and the per-interaction check (`allowed_place`) refuses anything that still arrives from
elsewhere (a DM, a guild the bot has not left yet, a channel outside the research channels).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.errors import Refusal

if TYPE_CHECKING:
    from bot.client import ImageBot

log = logging.getLogger(__name__)

DM_REFUSAL = "This bot only works in the servers it was set up for, not in direct messages."
GUILD_REFUSAL = "This bot is not enabled on this server."
CHANNEL_REFUSAL = "This command is not available in this channel."


def place_refusal(bot: ImageBot, interaction: discord.Interaction) -> Refusal | None:
    """The refusal for where this interaction came from, or None when the place is allowed."""
    settings = bot.settings
    if interaction.guild_id is None:
        return Refusal(DM_REFUSAL, "dm")
    if interaction.guild_id not in settings.allowed_guilds:
        return Refusal(GUILD_REFUSAL, "guild_not_allowed")
    if settings.allowed_channels is not None:
        channel = interaction.channel
        # A thread inside an allowed channel counts as that channel.
        parent_id = getattr(channel, "parent_id", None) if isinstance(channel, discord.Thread) else None
        if interaction.channel_id not in settings.allowed_channels and parent_id not in settings.allowed_channels:
            return Refusal(CHANNEL_REFUSAL, "channel_not_allowed")
    return None


def allowed_place():
    """App-command check: raise a private Refusal outside the allowed guilds and channels."""

    async def predicate(interaction: discord.Interaction) -> bool:
        bot: ImageBot = interaction.client  # type: ignore[assignment]
        refusal = place_refusal(bot, interaction)
        if refusal is not None:
            bot.audit.record("access", allowed=False, reason=refusal.reason, user_id=interaction.user.id,
                             guild_id=interaction.guild_id, channel_id=interaction.channel_id)
            raise refusal
        return True

    return app_commands.check(predicate)


class Guard(commands.Cog):
    """Leaves every guild that is not allowlisted, at start-up and whenever the bot is added."""

    def __init__(self, bot: ImageBot) -> None:
        self.bot = bot

    async def leave_if_not_allowed(self, guild: discord.Guild) -> None:
        if guild.id in self.bot.settings.allowed_guilds:
            return
        log.warning("Leaving guild %s: not in IMAGESEARCH_ALLOWED_GUILDS", guild.id)
        self.bot.audit.record("leave_guild", allowed=False, reason="guild_not_allowed", guild_id=guild.id)
        try:
            await guild.leave()
        except discord.HTTPException as exc:
            log.error("Could not leave guild %s: %s", guild.id, exc)

    @commands.Cog.listener()
    async def on_ready(self) -> None:
        for guild in list(self.bot.guilds):
            await self.leave_if_not_allowed(guild)

    @commands.Cog.listener()
    async def on_guild_join(self, guild: discord.Guild) -> None:
        await self.leave_if_not_allowed(guild)


async def setup(bot: ImageBot) -> None:
    await bot.add_cog(Guard(bot))
