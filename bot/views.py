"""The result pager: previous / next page, "more like this", "more from this book" and "show the N
near-identical" under a result message.

State (the encoded query, filters, page size, offset) lives in the View, not in custom ids:
a query vector does not fit in 100 characters, and the interaction token that lets us edit
the message dies after 15 minutes anyway. So the view times out a little before that, disables
its items by editing the message, and a press that arrives for a view that no longer exists
gets a short private note (`Search.on_interaction` in bot/cogs/search.py answers those).
"""

from __future__ import annotations

import asyncio
import io
import logging
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import discord

from bot import render
from bot.errors import Refusal, report_error, send_private
from bot.ratelimit import charge
from bot.results import Query, RenderedPage, render_page
from search_core.ordering import describe_order

if TYPE_CHECKING:
    from bot.client import ImageBot
    from bot.library import Edition

log = logging.getLogger(__name__)

CUSTOM_ID_PREFIX = "imgsearch"
# Interaction tokens live 15 minutes; after that the message can no longer be edited through
# them, so the view must disable itself before then. Measured from the latest press.
VIEW_TIMEOUT = 14 * 60.0
NOT_YOURS = "Only the person who ran this search can use these buttons. Run /imagesearch yourself."
# "Show the N near-identical" buttons, one per hit that stands for several images: two action rows
# under the pager's buttons and select. A page of the default 9 hits never needs more.
MAX_GROUP_BUTTONS = 10
GROUP_BUTTON_ROWS = (2, 3)
# The last of Discord's 5 action rows: the buttons are row 0, "more like this" row 1.
BOOK_SELECT_ROW = 4
EXPIRED = "These results have expired. Run /imagesearch again."

# Views alive in this process, by nonce: a press for any other imgsearch id is an expired one.
LIVE_PAGERS: dict[str, ResultPager] = {}


def upload_limit(interaction: discord.Interaction) -> int:
    """The largest file this interaction may upload (Discord sends it with each interaction)."""
    return int(getattr(interaction, "filesize_limit", 0) or 10 * 1024 * 1024)


async def draw_page(bot: ImageBot, interaction: discord.Interaction, query: Query, offset: int,
                    edition: Edition) -> RenderedPage:
    """Search one page of `edition` and draw its contact sheet, off the event loop, for this interaction.

    Where the bot may not attach files (`app_permissions`, sent with each interaction) the sheet is
    not drawn at all: the page is searched and shown as text (see `result_message`). Every action
    that shows a page goes through here, after `bot.ratelimit.charge`; a pager passes
    `bot.library.edition_for(...)`, the command the edition it encoded the query with.
    """
    if interaction.app_permissions.attach_files:
        return await bot.run_blocking(render_page, edition.service, query, offset, upload_limit(interaction))
    page = await bot.run_blocking(query.fetch, edition.service, offset)
    return RenderedPage(page=page, sheet=None, extension="png")


def result_message(query: Query, rendered: RenderedPage, permissions: discord.Permissions) -> dict[str, Any]:
    """Keyword arguments (content, embed, files) for followup.send / edit_original_response.

    What the bot may post where it was asked: without Attach Files, no contact sheet and a note
    saying why; without Embed Links, the same results as plain text. Discord refuses (or drops)
    what the permissions forbid, so the message never depends on them.
    """
    page = rendered.page
    attach = rendered.sheet is not None and permissions.attach_files
    notes = [render.NO_SHEET_NOTE] if page.hits and not permissions.attach_files else []
    embed = render.results_embed(query.label, page.hits, offset=page.offset, total=page.total_eligible,
                                 image_url=f"attachment://{rendered.filename}" if attach else None,
                                 weak_match=page.weak_match is True, collection=query.collection,
                                 order=describe_order(page))
    files = [discord.File(io.BytesIO(rendered.sheet), filename=rendered.filename,
                          description="Contact sheet of the results")] if attach else []
    if not permissions.embed_links:
        return {"content": render.results_text(embed, [*notes, render.NO_EMBED_NOTE]), "embed": None,
                "files": files}
    return {"content": "\n".join(notes) or None, "embed": embed, "files": files}


class ResultPager(discord.ui.View):
    """Pages through one query's results; only its owner may use it."""

    def __init__(self, bot: ImageBot, owner_id: int, query: Query, rendered: RenderedPage,
                 *, timeout: float | None = None) -> None:
        super().__init__(timeout=VIEW_TIMEOUT if timeout is None else timeout)
        self.bot = bot
        self.owner_id = owner_id
        self.query = query
        self.page = rendered.page
        self.nonce = secrets.token_hex(6)
        # What may edit the results message now: the follow-up itself (the command's token), then
        # each press's own interaction, whose token is fresher.
        self.message: discord.WebhookMessage | None = None
        self.last_interaction: discord.Interaction | None = None
        self._lock = asyncio.Lock()
        self.previous_page.custom_id = f"{CUSTOM_ID_PREFIX}:{self.nonce}:prev"
        self.next_page.custom_id = f"{CUSTOM_ID_PREFIX}:{self.nonce}:next"
        self.more_like_this.custom_id = f"{CUSTOM_ID_PREFIX}:{self.nonce}:more"
        self.more_from_book.custom_id = f"{CUSTOM_ID_PREFIX}:{self.nonce}:book"
        self._refresh_items()
        LIVE_PAGERS[self.nonce] = self

    def _refresh_items(self) -> None:
        self.previous_page.disabled = self.page.offset == 0
        self.next_page.disabled = not self.page.has_next
        options = []
        for hit in self.page.hits[:25]:
            label, description = render.select_option_text(hit)
            options.append(discord.SelectOption(label=label, description=description, value=str(hit.row)))
        if options:
            self.more_like_this.options = options
            self.more_like_this.disabled = False
        else:
            self.more_like_this.options = [discord.SelectOption(label="No results", value="-1")]
            self.more_like_this.disabled = True
        books = self._books_on_page()
        if books:
            self.more_from_book.options = [discord.SelectOption(label=label, description=description, value=book_id)
                                           for book_id, (label, description) in books.items()]
            self.more_from_book.disabled = False
        else:
            self.more_from_book.options = [discord.SelectOption(label="No book ids on this page", value="-")]
            self.more_from_book.disabled = True
        self._refresh_group_buttons()

    def _books_on_page(self) -> dict[str, tuple[str, str]]:
        """book id -> option text, for the page's hits that name a book (each book once, in rank
        order), leaving out the book this message already lists."""
        books: dict[str, tuple[str, str]] = {}
        for hit in self.page.hits:
            book_id = hit.book_id
            if not book_id or len(book_id) > render.OPTION_TEXT_LIMIT or book_id == self.query.book_id:
                continue
            books.setdefault(book_id, render.book_option_text(hit))
        return dict(list(books.items())[:25])

    def _refresh_group_buttons(self) -> None:
        """One "Show the N near-identical" button per hit of this page that stands for several."""
        for item in [c for c in self.children if isinstance(c, GroupButton)]:
            self.remove_item(item)
        grouped = [h for h in self.page.hits if h.group_size > 1][:MAX_GROUP_BUTTONS]
        per_row = MAX_GROUP_BUTTONS // len(GROUP_BUTTON_ROWS)
        for i, hit in enumerate(grouped):
            self.add_item(GroupButton(hit, custom_id=f"{CUSTOM_ID_PREFIX}:{self.nonce}:group{i}",
                                      row=GROUP_BUTTON_ROWS[i // per_row]))

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        if interaction.user.id != self.owner_id:
            await interaction.response.send_message(NOT_YOURS, ephemeral=True)
            return False
        return True

    async def _show(self, interaction: discord.Interaction, step: int) -> None:
        """Move `step` pages. The offset is read inside the lock, so two quick presses of Next go
        two pages, not to the same page twice; a press while a page is still being drawn, or one
        that would not move, is acknowledged and dropped without counting against the rate limit.
        A press that draws a page is charged (bot.ratelimit.charge) before anything is queued on
        the single model thread, so one user hammering buttons cannot hold it for everyone."""
        if self._lock.locked():
            await self._acknowledge(interaction)
            return
        async with self._lock:
            offset = max(0, self.page.offset + step * self.query.k)
            if offset == self.page.offset or (step > 0 and not self.page.has_next):
                await self._acknowledge(interaction)
                return
            edition = self._edition(interaction, "page")
            charge(self.bot, interaction, "page", offset=offset, collection=self.query.collection)
            await self._acknowledge(interaction)
            rendered = await draw_page(self.bot, interaction, self.query, offset, edition)
            self.page = rendered.page
            self._refresh_items()
            parts = result_message(self.query, rendered, interaction.app_permissions)
            await interaction.edit_original_response(content=parts["content"], embed=parts["embed"],
                                                     attachments=parts["files"], view=self)

    def _edition(self, interaction: discord.Interaction, action: str) -> Edition:
        """The edition these results came from; a private "search again" once it was rebuilt."""
        try:
            return self.bot.library.edition_for(self.query.collection, self.query.version)
        except Refusal as refusal:
            self.bot.audit.record(action, allowed=False, reason=refusal.reason, user_id=interaction.user.id,
                                  guild_id=interaction.guild_id, channel_id=interaction.channel_id,
                                  collection=self.query.collection)
            raise

    async def _acknowledge(self, interaction: discord.Interaction) -> None:
        """An update of this message (the 3-second clock stops); the press's token is the freshest
        one to edit the message with later."""
        await interaction.response.defer()
        self.last_interaction = interaction

    @discord.ui.button(label="Previous", emoji="◀️", style=discord.ButtonStyle.secondary)
    async def previous_page(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
        await self._show(interaction, -1)

    @discord.ui.button(label="Next", emoji="▶️", style=discord.ButtonStyle.secondary)
    async def next_page(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
        await self._show(interaction, +1)

    @discord.ui.select(placeholder="More like this…", min_values=1, max_values=1,
                       options=[discord.SelectOption(label="-", value="-1")])
    async def more_like_this(self, interaction: discord.Interaction, select: discord.ui.Select) -> None:
        """A new search from a chosen hit's own embedding, posted as a new message with its own pager."""
        await self._search_from_hit(interaction, int(select.values[0]), "more_like_this", lambda hit, edition: Query(
            label=f"more like {render.clip(hit.file_name, 80)}", k=self.query.k, row=hit.row,
            collection=edition.name, version=edition.version, order=self.query.order,
            year_from=self.query.year_from, year_to=self.query.year_to))

    async def show_group(self, interaction: discord.Interaction, row: int) -> None:
        """The near-identical images a hit stands for, as a new message with its own pager, ranked
        by this search's query (or by likeness to the hit, for "more like this" results)."""
        await self._search_from_hit(interaction, row, "expand_group", lambda hit, edition: Query(
            label=f"the {hit.group_size} near-identical of {render.clip(hit.file_name, 80)}", k=self.query.k,
            collection=edition.name, version=edition.version,
            vector=self.query.vector, group_row=hit.row, year_from=self.query.year_from,
            year_to=self.query.year_to))

    async def _search_from_hit(self, interaction: discord.Interaction, row: int, action: str,
                               make_query: Callable[[Any, Edition], Query]) -> None:
        """Charge, defer privately and post `make_query(hit, edition)`'s results for a hit of this
        page, in the edition these results came from (a private "search again" once it was rebuilt)."""
        hit = next((h for h in self.page.hits if h.row == row), None)
        if hit is None:
            await send_private(interaction, "That result is no longer on this page.")
            return
        edition = self._edition(interaction, action)
        charge(self.bot, interaction, action, row=row, collection=edition.name)
        await defer_privately(interaction)
        query = make_query(hit, edition)
        await send_results(self.bot, interaction, query, await draw_page(self.bot, interaction, query, 0, edition))

    @discord.ui.select(placeholder="More from this book…", min_values=1, max_values=1, row=BOOK_SELECT_ROW,
                       options=[discord.SelectOption(label="-", value="-")])
    async def more_from_book(self, interaction: discord.Interaction, select: discord.ui.Select) -> None:
        """The chosen hit's book, all its illustrations in page order, posted as a new message with its own pager."""
        book_id = select.values[0]
        books = self._books_on_page()
        if book_id not in books:
            await send_private(interaction, "That book is no longer on this page.")
            return
        edition = self._edition(interaction, "more_from_book")
        charge(self.bot, interaction, "more_from_book", book_id=book_id, collection=edition.name)
        await defer_privately(interaction)
        title = next(h.title for h in self.page.hits if h.book_id == book_id)
        label = f"the book “{render.clip(render.one_line(title), 80)}” ({book_id})" if title else f"book {book_id}"
        query = Query(label=label, k=self.query.k, book_id=book_id, collection=edition.name, version=edition.version)
        await send_results(self.bot, interaction, query, await draw_page(self.bot, interaction, query, 0, edition))

    async def on_timeout(self) -> None:
        LIVE_PAGERS.pop(self.nonce, None)
        for item in self.children:
            item.disabled = True  # type: ignore[attr-defined]
        try:
            if self.last_interaction is not None:
                await self.last_interaction.edit_original_response(view=self)
            elif self.message is not None:
                await self.message.edit(view=self)
        except discord.HTTPException as exc:
            log.info("Could not disable an expired pager: %s", exc)

    async def on_error(self, interaction: discord.Interaction, error: Exception, item: discord.ui.Item) -> None:
        await report_error(interaction, error, f"pager {getattr(item, 'custom_id', '?')}")

    def stop(self) -> None:
        LIVE_PAGERS.pop(self.nonce, None)
        super().stop()


class GroupButton(discord.ui.Button["ResultPager"]):
    """"Show the N near-identical" under a hit that stands for N images; only the pager's owner
    may press it (ResultPager.interaction_check), and a press is charged like a search."""

    def __init__(self, hit: Any, *, custom_id: str, row: int) -> None:
        super().__init__(label=render.group_button_label(hit), style=discord.ButtonStyle.secondary,
                         custom_id=custom_id, row=row)
        self.hit_row = hit.row

    async def callback(self, interaction: discord.Interaction) -> None:
        await self.view.show_group(interaction, self.hit_row)


async def defer_privately(interaction: discord.Interaction) -> None:
    """Acknowledge within Discord's 3 seconds with a "thinking…" only the invoker sees.

    Why private: Discord keeps a deferred response's visibility for its first follow-up, and a
    search can still be refused after this point (a blocked concept, a broken image). Deferring
    privately keeps every refusal private; the results are posted publicly by `send_results`.
    """
    interaction.extras["private_defer"] = True
    await interaction.response.defer(ephemeral=True, thinking=True)


async def send_results(bot: ImageBot, interaction: discord.Interaction, query: Query,
                       rendered: RenderedPage) -> discord.WebhookMessage:
    """Post the results publicly, with their pager, after a private deferral.

    The private "thinking…" is first replaced (so the results become a follow-up of their own,
    with their own visibility), then deleted once the results are up.
    """
    parts = result_message(query, rendered, interaction.app_permissions)
    view = ResultPager(bot, interaction.user.id, query, rendered)
    try:
        await interaction.edit_original_response(content="Posting your results…")
        message = await interaction.followup.send(content=parts["content"], embed=parts["embed"],
                                                  files=parts["files"], view=view, ephemeral=False, wait=True)
    except BaseException:
        view.stop()   # never posted: drop it from LIVE_PAGERS with its query vector
        raise
    view.message = message
    interaction.extras["answered"] = True
    try:
        await interaction.delete_original_response()
    except discord.HTTPException:
        log.debug("Could not delete the private placeholder", exc_info=True)
    return message
