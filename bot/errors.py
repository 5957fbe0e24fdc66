"""Errors in app commands: a short private message for the user, the traceback for developers.

Order of handling in `ImageBotTree.on_error`:
1. `Refusal` (an access rule, the rate limit, a bad query): its own sentence.
2. Any other `app_commands.CheckFailure`: a fixed sentence.
3. `QueryError` from search_core: its message, about the user's own input.
4. `discord.NotFound` / `Forbidden`: the interaction is gone or we may not answer; log only.
5. Anything else, other `ImageSearchError`s included (a broken collection, a model mismatch:
   their text is for operators and may hold server paths): "Something went wrong (ref 7f3a)",
   with that ref logged beside the traceback.
"""

from __future__ import annotations

import logging
import secrets

import discord
from discord import app_commands

from search_core.errors import QueryError

log = logging.getLogger(__name__)

GENERIC_CHECK_FAILURE = "You can't use this command here."


class Refusal(app_commands.CheckFailure):
    """A refusal whose message the user sees privately. `reason` is a short code for the audit log."""

    def __init__(self, message: str, reason: str = "refused") -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason


async def send_private(interaction: discord.Interaction, text: str) -> None:
    """Tell only the invoker, whatever state the interaction is in.

    Discord keeps a deferred response's visibility for its first follow-up. The bot defers
    privately (see bot/cogs/search.py), so while that "thinking…" message is unanswered,
    replacing it is private; afterwards a follow-up with ephemeral=True is a message of its own.
    """
    try:
        if not interaction.response.is_done():
            await interaction.response.send_message(text, ephemeral=True)
        elif (interaction.response.type == discord.InteractionResponseType.deferred_channel_message
                and interaction.extras.get("private_defer") and not interaction.extras.get("answered")):
            await interaction.edit_original_response(content=text)
            interaction.extras["answered"] = True
        else:
            await interaction.followup.send(text, ephemeral=True)
    except discord.HTTPException as exc:   # gone (404), not allowed (403), token expired (401)
        log.info("Interaction %s: its private message could not be sent (%s %s)", interaction.id,
                 exc.status, type(exc).__name__)


def error_message(error: BaseException) -> str | None:
    """The user's sentence for an error, or None for errors that get no reply."""
    original = getattr(error, "original", None) or error
    if isinstance(error, Refusal):
        return error.message
    if isinstance(error, app_commands.CheckFailure):
        return GENERIC_CHECK_FAILURE
    if isinstance(original, QueryError):
        return str(original) or "That search could not be done."
    return None


async def report_error(interaction: discord.Interaction, error: BaseException, where: str) -> None:
    """Shared by the tree and the views: reply privately, log what developers need."""
    original = getattr(error, "original", None) or error
    text = error_message(error)
    if text is None:
        if isinstance(original, (discord.NotFound, discord.Forbidden)):
            log.info("%s: Discord refused a reply (%s)", where, type(original).__name__)
            return
        ref = secrets.token_hex(2)
        log.error("%s failed (ref %s)", where, ref, exc_info=original)
        text = f"Something went wrong (ref {ref}). Please try again later."
    await send_private(interaction, text)


class ImageBotTree(app_commands.CommandTree):
    """Passed to the bot as tree_cls so every app command shares one error policy."""

    async def on_error(self, interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
        name = interaction.command.qualified_name if interaction.command else "command"
        audit = getattr(interaction.client, "audit", None)
        if audit is not None and not isinstance(error, Refusal):   # refusals are audited where raised
            audit.record("error", allowed=False, reason=type(getattr(error, "original", error)).__name__,
                         user_id=interaction.user.id, guild_id=interaction.guild_id,
                         channel_id=interaction.channel_id)
        await report_error(interaction, error, f"/{name}")
