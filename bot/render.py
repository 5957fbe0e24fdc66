"""What a result message looks like, kept inside Discord's limits.

Limits (Discord API docs): message content 2000 characters, embed title 256, embed description
4096, footer 2048, all embed text together 6000; select option labels and descriptions 100.
Titles in the collection can be long (British Library titles run to paragraphs), so every piece
is cut to its own budget rather than trusting the data.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import discord

CONTENT_LIMIT = 2000
EMBED_TITLE_LIMIT = 256
EMBED_DESCRIPTION_LIMIT = 4096
EMBED_FOOTER_LIMIT = 2048
EMBED_TOTAL_LIMIT = 6000
OPTION_TEXT_LIMIT = 100

NO_SHEET_NOTE = ("-# No contact sheet: this bot may not attach files in this channel "
                 "(a server admin can grant it Attach Files).")
NO_EMBED_NOTE = "-# Plain text: this bot may not embed links in this channel (Embed Links)."

# Each hit's line gets an equal share of the description, at most this much.
LINE_LIMIT = 300
PROMPT_SHOWN = 120
# Above the hits of a text search whose best hit is weak (search_core/weak_match.py, README).
WEAK_MATCH_LINE = ("⚠️ **Weak match:** nothing in the collection matches this prompt well; its best hit "
                   "scores lower than 9 in 10 everyday prompts' best. Try other words.")


def clip(text: str, limit: int) -> str:
    """Cut to `limit` characters, marking the cut with an ellipsis."""
    text = str(text)
    return text if len(text) <= limit else text[: max(0, limit - 1)].rstrip() + "…"


def no_breaks(text: str) -> str:
    """Line breaks and control characters to spaces; other spacing kept (file names must stay exact)."""
    return "".join(" " if not c.isprintable() else c for c in str(text))


def one_line(text: str) -> str:
    """Collapse newlines and runs of spaces: metadata and prompts must not break the layout."""
    return " ".join(str(text).split())


def escape(text: str) -> str:
    """Neutralise markdown and mentions coming from collection metadata or a user's prompt."""
    return discord.utils.escape_mentions(discord.utils.escape_markdown(text))


def query_label(prompt: str | None, has_image: bool, without: str | None = None) -> str:
    """A short description of the query for the public result's title; never the whole prompt.

    An attached image is named only as "an attached image": its file name is chosen by the user
    and never moderated, so showing it publicly would let any blocked word through. The prompt
    and `without` are shown as typed: both passed the term and concept checks.
    """
    parts = []
    if prompt:
        parts.append(f"“{clip(one_line(prompt), PROMPT_SHOWN)}”")
    if has_image:
        parts.append("an attached image")
    label = " + ".join(parts) or "your query"
    if without:
        label += f" without “{clip(one_line(without), PROMPT_SHOWN // 2)}”"
    return label


def hit_line(hit: Any, limit: int = LINE_LIMIT) -> str:
    """`1. file_name — title (year) · 5 near-identical` cut to `limit`, metadata escaped."""
    year = f" ({hit.year})" if getattr(hit, "year", None) is not None else ""
    copies = getattr(hit, "group_size", 1)
    year += f" · {copies} near-identical" if copies > 1 else ""
    title = getattr(hit, "title", None)
    name = clip(no_breaks(hit.file_name), max(20, limit // 2))
    text = f"**{hit.rank}.** `{name.replace('`', 'ʹ')}`"
    if title:
        room = limit - len(text) - len(year) - 3
        if room > 10:
            text += " — " + escape(clip(one_line(title), room))
    return clip(text + year, limit)


def results_embed(label: str, hits: Sequence[Any], *, offset: int, total: int | None,
                  image_url: str | None, weak_match: bool = False, collection: str | None = None,
                  order: str | None = None) -> discord.Embed:
    """One embed: title, [the weak-match line,] one line per hit, the contact sheet as its image, a
    footer naming the page, the order when it is not relevance (search_core.ordering.describe_order)
    and the collection searched."""
    title = clip(f"Results for {label}", EMBED_TITLE_LIMIT)
    if hits:
        warning = [WEAK_MATCH_LINE] if weak_match else []
        room = EMBED_DESCRIPTION_LIMIT - 50 - sum(len(w) + 1 for w in warning)
        per_line = min(LINE_LIMIT, room // len(hits) - 1)
        description = "\n".join([*warning, *(hit_line(h, per_line) for h in hits)])
    else:
        description = "No images match this search (try a wider year range)."
    embed = discord.Embed(title=escape(title)[:EMBED_TITLE_LIMIT],
                          description=clip(description, EMBED_DESCRIPTION_LIMIT))
    if image_url:
        embed.set_image(url=image_url)
    where = [collection] if collection else []
    if hits:
        first, last = offset + 1, offset + len(hits)
        of = f" of {total}" if total is not None else ""
        embed.set_footer(text=clip(" · ".join([f"Results {first}–{last}{of}", *([order] if order else []), *where,
                                               "numbers match the contact sheet"]), EMBED_FOOTER_LIMIT))
    elif where:
        embed.set_footer(text=clip(f"Collection: {collection}", EMBED_FOOTER_LIMIT))
    return embed


def group_button_label(hit: Any) -> str:
    """The button under a hit that stands for several near-identical images (80 characters at most)."""
    return f"Show the {hit.group_size} near-identical (#{hit.rank})"


def select_option_text(hit: Any) -> tuple[str, str]:
    """(label, description) for the "more like this" select, each within 100 characters."""
    title = one_line(getattr(hit, "title", None) or hit.file_name)
    year = f" ({hit.year})" if getattr(hit, "year", None) is not None else ""
    label = clip(f"{hit.rank}. {clip(str(title), OPTION_TEXT_LIMIT - len(year) - 6)}{year}", OPTION_TEXT_LIMIT)
    return label, clip(no_breaks(hit.file_name), OPTION_TEXT_LIMIT)


def book_option_text(hit: Any) -> tuple[str, str]:
    """(label, description) for the "more from this book" select: the hit as "more like this"
    names it, then its book id."""
    label, _ = select_option_text(hit)
    return label, clip(f"book {hit.book_id}", OPTION_TEXT_LIMIT)


def results_text(embed: discord.Embed, notes: Sequence[str] = ()) -> str:
    """The results embed as message content, for channels where the bot may not post embeds:
    title, hit lines (whole lines only, as many as fit) and footer, then the notes, in 2000
    characters."""
    tail = [f"-# {embed.footer.text}"] if embed.footer and embed.footer.text else []
    tail += list(notes)
    head = f"**{embed.title}**" if embed.title else ""
    room = CONTENT_LIMIT - len(head) - sum(len(t) + 1 for t in tail) - 1
    lines: list[str] = []
    for line in (embed.description or "").splitlines():
        if len(line) + 1 > room:
            break
        lines.append(line)
        room -= len(line) + 1
    return clip("\n".join(part for part in [head, *lines, *tail] if part), CONTENT_LIMIT)
