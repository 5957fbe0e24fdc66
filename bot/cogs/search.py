"""`/imagesearch`: search the collection by a prompt, an image, or both.

Order of work, chosen for Discord's visibility rule (a deferred response's visibility is kept by
its first follow-up): everything that can refuse in microseconds runs first and refuses with a
private `send_message` (access rules, input checks, attachment size and type, rate limit,
blocked terms); then the command defers at once (3-second deadline), privately; then download,
decoding, encoding, the concept check, search and rendering run off the event loop. A refusal
after that point (a blocked concept, a broken image) replaces the private "thinking…", so the
channel never sees it; results are posted publicly as a follow-up of their own
(`bot.views.send_results`). Deleting a public "thinking…" and following up ephemerally was the
other option; which visibility that follow-up gets is not documented by Discord, so not relied on.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot import render
from bot.cogs.guard import allowed_place, place_refusal
from bot.errors import Refusal, send_private
from bot.ratelimit import charge
from bot.results import Query
from bot.views import (
    CUSTOM_ID_PREFIX,
    EXPIRED,
    LIVE_PAGERS,
    defer_privately,
    draw_page,
    send_results,
)
from search_core.collection import check_year_range
from search_core.errors import QueryError
from search_core.images import ACCEPTED_FORMATS, MAX_QUERY_BYTES, accepted_format_names, load_query_image
from search_core.ordering import ORDER_RELEVANCE, check_order
from search_core.query_expr import QueryExpression, parse_query
from search_core.query_vector import check_terms, encode_expression
from search_core.search import check_prompt

if TYPE_CHECKING:
    from bot.client import ImageBot

log = logging.getLogger(__name__)

# A query image needs far less than Discord's upload limit; refusing bigger ones before download
# keeps a user from making the bot fetch and decode 500 MB.
MAX_ATTACHMENT_BYTES = min(MAX_QUERY_BYTES, 10 * 1024 * 1024)
# Content types Discord gives attachments; HEIF photos from iPhones arrive as image/heic.
IMAGE_TYPES = tuple(f"image/{f.lower()}" for f in ACCEPTED_FORMATS) + ("image/jpg", "image/x-ms-bmp", "image/heic")
NEED_QUERY = "Give a prompt, attach an image, or both."
GENERIC_REFUSAL = "This search can't be run: it matches content this server does not allow."
# Discord shows at most 25 autocomplete choices.
MAX_CHOICES = 25


def check_attachment(attachment: discord.Attachment) -> None:
    """Refuse from the attachment's metadata alone, before a byte is downloaded."""
    if attachment.size <= 0:
        raise QueryError("The attached file is empty (0 bytes).")
    if attachment.size > MAX_ATTACHMENT_BYTES:
        raise QueryError(f"The attached image is too large ({attachment.size / 1e6:.1f} MB); "
                         f"the limit is {MAX_ATTACHMENT_BYTES / 1e6:.0f} MB.")
    content_type = (attachment.content_type or "").split(";")[0].strip().lower()
    if content_type and content_type not in IMAGE_TYPES:
        raise QueryError(f"The attached file is not an image. Attach a {accepted_format_names()}.")


def read_expression(prompt: str | None, without: str | None, has_image: bool) -> QueryExpression:
    """The prompt's terms (query arithmetic: `steam engine + night - people`, weights `2*ship`) and
    `without` as one more subtracted term, taken literally. QueryError (with the character where a
    malformed prompt goes wrong) when there is nothing to search for or the prompt cannot be read."""
    prompt = prompt if prompt is not None and prompt.strip() else None
    negative = check_prompt(without) if without is not None and without.strip() else None
    if prompt is None and negative is None and not has_image:
        raise QueryError(NEED_QUERY)
    return parse_query(prompt, subtract=[negative] if negative else (), has_image=has_image)


class Search(commands.Cog):
    def __init__(self, bot: ImageBot) -> None:
        self.bot = bot

    @app_commands.command(name="imagesearch")
    @app_commands.describe(
        prompt="What to look for; terms may be added and subtracted: 'steam engine + night - people', '2*ship'",
        without="What the results should not show (subtracted from the prompt), e.g. 'people'",
        image="An image to find similar illustrations to (JPEG, PNG, WebP, GIF, BMP, TIFF, HEIC or AVIF)",
        k="How many results per page",
        year_from="Only books published in or after this year",
        year_to="Only books published in or before this year",
        order="relevance (default), or year: the most relevant results shown oldest first",
        collection="Which collection to search (the server's first one if left out)",
    )
    @app_commands.guild_only()
    @allowed_place()
    async def imagesearch(
        self,
        interaction: discord.Interaction,
        prompt: str | None = None,
        without: str | None = None,
        image: discord.Attachment | None = None,
        k: app_commands.Range[int, 1, 25] = 9,
        year_from: app_commands.Range[int, 1000, 2100] | None = None,
        year_to: app_commands.Range[int, 1000, 2100] | None = None,
        order: Literal["relevance", "year"] = ORDER_RELEVANCE,
        collection: app_commands.Range[str, 1, 100] | None = None,
    ) -> None:
        """Search the illustrated books collection by a description, an image, or both."""
        bot = self.bot
        where = {"user_id": interaction.user.id, "guild_id": interaction.guild_id,
                 "channel_id": interaction.channel_id}

        # 1. Microsecond checks; each refusal is private because nothing is deferred yet. The
        # edition is taken once: a rebuild swapped in while this query runs does not touch it.
        try:
            edition = bot.library.resolve(interaction.guild_id, collection)
        except Refusal as refusal:
            bot.audit.record("search", allowed=False, reason=refusal.reason, prompt=prompt, **where)
            raise
        where["collection"] = edition.name
        try:
            expression = read_expression(prompt, without, image is not None)
            check_year_range(year_from, year_to)
            check_order(order)
            if image is not None:
                check_attachment(image)
        except QueryError as exc:
            bot.audit.record("search", allowed=False, reason="bad_query", prompt=prompt, **where)
            raise Refusal(str(exc), "bad_query") from exc
        prompt = check_prompt(prompt) if prompt is not None and prompt.strip() else None
        without = " ".join(without.split()) if without is not None and without.strip() else None
        k = min(k, bot.settings.max_k)
        asked = {"prompt": prompt, "has_image": image is not None, "has_without": without is not None,
                 "terms": len(expression.terms), "order": order}

        charge(bot, interaction, "search", prompt=prompt, collection=edition.name)

        # Blocked terms in every term (the `without` one too) and in all of them read together.
        decision = check_terms(expression, edition.policy)
        if decision is not None:
            bot.audit.record("search", allowed=False, reason=f"term:{decision.category}", **asked, **where)
            raise Refusal(decision.message or GENERIC_REFUSAL, "blocked_term")

        # 2. A private "thinking…" within Discord's 3 seconds; the rest happens off the event loop.
        await defer_privately(interaction)

        picture = None
        if image is not None:
            try:
                data = await image.read()
            except discord.HTTPException as exc:
                raise QueryError("The attached image could not be downloaded from Discord; "
                                 "try attaching it again.") from exc
            picture = await bot.run_blocking(load_query_image, data, max_bytes=MAX_ATTACHMENT_BYTES)

        # Every term, the image, and the terms' sum are checked against blocked concepts, by the
        # collection's own model (or the text model aligned with it) in the worker thread.
        encoded = await bot.run_blocking(encode_expression, edition.service, expression, picture, edition.policy)
        if not encoded.allowed:
            refusal = encoded.decision
            bot.audit.record("search", allowed=False, reason=f"concept:{refusal.category if refusal else '?'}",
                             part=encoded.part, **asked, **where)
            await send_private(interaction, (refusal.message if refusal else None) or GENERIC_REFUSAL)
            return

        # The weak-match scale is measured on plain prompts' best hits. A difference of text vectors
        # loses much of the direction all CLIP prompts share and tends to score lower against every
        # image, so an expression is not judged against it.
        query = Query(label=render.query_label(prompt, image is not None, without=without), k=k,
                      collection=edition.name, version=edition.version, vector=encoded.vector,
                      text_query=image is None and not expression.is_arithmetic,
                      year_from=year_from, year_to=year_to, order=order)
        rendered = await draw_page(bot, interaction, query, 0, edition)
        await send_results(bot, interaction, query, rendered)
        bot.audit.record("search", allowed=True, k=k, year_from=year_from, year_to=year_to,
                         hits=len(rendered.page.hits), **asked, **where)

    @imagesearch.autocomplete("collection")
    async def collection_choices(self, interaction: discord.Interaction,
                                 current: str) -> list[app_commands.Choice[str]]:
        """The collections this server may search, with their rows and years, matching what was typed
        (part of a name or of the years).

        Autocomplete runs no checks of its own, so the place rules are asked here: nothing is
        offered where the command would be refused, and a server never sees another's collections.
        """
        if place_refusal(self.bot, interaction) is not None:
            return []
        return [app_commands.Choice(name=edition.label, value=edition.name)
                for edition in self.bot.library.offered(interaction.guild_id) if edition.matches(current)][:MAX_CHOICES]

    @commands.Cog.listener()
    async def on_interaction(self, interaction: discord.Interaction) -> None:
        """Answer presses on pagers that no longer exist (timed out, or from before a restart)."""
        if interaction.type is not discord.InteractionType.component:
            return
        custom_id = str((interaction.data or {}).get("custom_id", ""))
        parts = custom_id.split(":")
        if len(parts) != 3 or parts[0] != CUSTOM_ID_PREFIX or parts[1] in LIVE_PAGERS:
            return
        if not interaction.response.is_done():
            await interaction.response.send_message(EXPIRED, ephemeral=True)


async def setup(bot: ImageBot) -> None:
    await bot.add_cog(Search(bot))
