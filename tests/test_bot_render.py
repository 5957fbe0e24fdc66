"""Result messages stay inside Discord's limits whatever the collection's metadata holds."""

from __future__ import annotations

import discord

from bot import render
from search_core.search import Hit


def long_hit(rank: int) -> Hit:
    return Hit(rank=rank, row=rank - 1, score=0.5, file_name="0" * 9 + "_0_000579_1_[" + "T" * 400 + "]_1850.jpg",
               title="A very long title, " * 40 + "**with** `markdown` @everyone", year=1850)


def test_25_long_hits_fit_one_embed() -> None:
    """The largest page with absurdly long titles fits the description and total embed limits."""
    hits = [long_hit(i) for i in range(1, 26)]
    embed = render.results_embed(render.query_label("x" * 2000, True), hits, offset=0, total=10_000,
                                 image_url="attachment://results.png")
    assert len(embed.description) <= render.EMBED_DESCRIPTION_LIMIT
    assert len(embed.title) <= render.EMBED_TITLE_LIMIT
    assert len(embed) <= render.EMBED_TOTAL_LIMIT
    assert embed.description.count("\n") == 24   # one line per hit, none dropped


def test_every_hit_line_names_its_file() -> None:
    """Each line starts with the hit's rank and shows (the start of) its source file name."""
    hits = [Hit(rank=i, row=i, score=0.1, file_name=f"file_{i}.jpg", title="Poems", year=1900) for i in (1, 2)]
    embed = render.results_embed("“ships”", hits, offset=0, total=2, image_url=None)
    lines = embed.description.splitlines()
    assert lines[0].startswith("**1.**") and "file_1.jpg" in lines[0] and "(1900)" in lines[0]
    assert "file_2.jpg" in lines[1]


def test_metadata_cannot_mention_or_format() -> None:
    """Markdown and @everyone from a title are escaped, so a title can't ping a channel."""
    line = render.hit_line(Hit(rank=1, row=0, score=0.1, file_name="a.jpg", title="@everyone **bold**", year=None))
    assert "@everyone" not in line and "\\*\\*bold" in line


def test_prompt_is_shortened_in_the_title() -> None:
    """A 2,000-character prompt is not repeated whole to the channel."""
    label = render.query_label("ship " * 400, False)
    assert len(label) <= render.PROMPT_SHOWN + 2


def test_select_option_text_fits_100_characters() -> None:
    """"More like this" options stay within Discord's 100-character label and description."""
    label, description = render.select_option_text(long_hit(25))
    assert len(label) <= 100 and len(description) <= 100
    discord.SelectOption(label=label, description=description, value="24")  # accepted by discord.py


def test_empty_page_says_so() -> None:
    """A page without hits explains itself instead of sending an empty embed."""
    embed = render.results_embed("“x”", [], offset=0, total=0, image_url=None)
    assert "No images" in embed.description and embed.image.url is None
