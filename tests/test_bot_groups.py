"""The bot and near-identical images, end to end through the fake Discord: a "Show the N
near-identical" button under each hit that stands for several images (and only there), pressing it
posts the group, only the searcher may press it and a press counts against the rate limit; and the
weak-match line above the hits of a weak text search.

The collection: 12 generated pictures, 3 of them also as 4 re-encoded or rescaled copies each,
filed under other books and years (tests/fixtures/near_duplicates.py), built with the tiny CLIP.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from bot import redaction, render
from bot.client import ImageBot
from bot.library import Library, edition_of
from bot.settings import CollectionSpec, RateLimit, Settings
from search_core.layout import MatchScale
from search_core.search import SearchService
from tests.fake_discord import FakeDiscord, FakeInteraction, FakeMessage, FakeUser
from tests.fixtures.bot import results
from tests.test_bot_e2e import hit_lines

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(120)]

RATE = RateLimit(3, 60.0)


class Env:
    def __init__(self, fake: FakeDiscord, bot: ImageBot, lab: Any) -> None:
        self.fake, self.bot, self.lab = fake, bot, lab
        self._users = 0

    def user(self) -> FakeUser:
        self._users += 1
        return self.fake.add_user(f"reader{self._users}")

    async def search(self, user: FakeUser, **options: Any) -> FakeInteraction:
        return await self.fake.slash_command("imagesearch", options=options, user=user, guild=self.lab,
                                             channel="research")


@pytest.fixture(scope="module")
def service(copies_collection: Path) -> SearchService:
    return SearchService.open(copies_collection, device="cpu")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(service: SearchService, copies_collection: Path):
    async with FakeDiscord() as fake:
        fake.install()
        lab = fake.add_guild("Lab", channels=["research"])
        spec = CollectionSpec("copies", copies_collection)
        settings = Settings(discord_token=fake.token, collections=(spec,),
                            allowed_guilds=frozenset({lab.id}), allowed_channels=frozenset({lab.channels["research"]}),
                            rate_limit=RATE, device="cpu")
        bot = ImageBot(settings, Library([edition_of(spec, service)]), guild_ready_timeout=0.05)
        task = asyncio.create_task(bot.start(fake.token))
        try:
            await fake.wait_ready()
            await asyncio.wait_for(bot.wait_until_ready(), 10)
            yield Env(fake, bot, lab)
        finally:
            await bot.close()
            await asyncio.wait_for(task, 10)
            redaction.uninstall()   # the bot installed it for the whole process


def group_buttons(msg: FakeMessage) -> list[dict]:
    return [b for b in msg.buttons if ":group" in b["custom_id"]]


def picture(line: str) -> int:
    """The picture a hit line shows: its file name's page number (tests/fixtures/near_duplicates.py)."""
    return int(line.split("`")[1].split("_")[2])


async def test_a_button_for_each_hit_that_stands_for_others(env: Env) -> None:
    """All 12 pictures on one page: the 3 with copies say so and get a button naming their count
    and rank; the others get none."""
    msg = await results(await env.search(env.user(), prompt="an ornament", k=12))
    lines = hit_lines(msg)
    assert len(lines) == 12 and len({picture(line) for line in lines}) == 12
    grouped = [line for line in lines if "· 5 near-identical" in line]
    assert sorted(picture(line) for line in grouped) == [2, 5, 9]
    labels = sorted(b["label"] for b in group_buttons(msg))
    ranks = sorted(line.split(".**")[0].removeprefix("**") for line in grouped)
    assert labels == sorted(f"Show the 5 near-identical (#{rank})" for rank in ranks)


@pytest.mark.parametrize("years", [(1860, 1860), (1870, 1870)])
async def test_no_button_where_no_hit_stands_for_others(env: Env, years: tuple[int, int]) -> None:
    """1860 holds no copied picture; 1870 holds originals of copied pictures but none of their
    copies (filed under 1880-1883), so within the filter they stand for themselves only."""
    msg = await results(await env.search(env.user(), prompt="an ornament", k=12, year_from=years[0],
                                         year_to=years[1]))
    assert hit_lines(msg) and not group_buttons(msg)
    assert not any("near-identical" in line for line in hit_lines(msg))


async def test_pressing_the_button_posts_the_group(env: Env) -> None:
    """The press posts a new public message listing the picture's 5 images, with no buttons of its own."""
    user = env.user()
    msg = await results(await env.search(user, prompt="an ornament", k=12))
    button = group_buttons(msg)[0]
    rank = button["label"].split("#")[1].rstrip(")")
    shown = next(picture(line) for line in hit_lines(msg) if line.startswith(f"**{rank}.**"))
    group = await results(await env.fake.press_button(msg, button["custom_id"], user=user))
    assert group.id != msg.id and "the 5 near-identical of" in group.embeds[0]["title"]
    assert [picture(line) for line in hit_lines(group)] == [shown] * 5
    assert not group_buttons(group)


async def test_only_the_searcher_may_press_it(env: Env) -> None:
    """Another user's press gets a private note; nothing is posted."""
    owner, other = env.user(), env.user()
    msg = await results(await env.search(owner, prompt="an ornament", k=12))
    press = await env.fake.press_button(msg, group_buttons(msg)[0]["custom_id"], user=other)
    response = await press.wait_response()
    assert response.type == 4 and response.ephemeral and "Only the person" in response.message.content
    await asyncio.sleep(0.2)
    assert not [m for m in press.messages if not m.ephemeral]


async def test_a_press_counts_against_the_rate_limit(env: Env) -> None:
    """Search, then two presses use the 3 allowed; the third press is refused privately."""
    user = env.user()
    msg = await results(await env.search(user, prompt="an ornament", k=12))
    button = group_buttons(msg)[0]["custom_id"]
    for _ in range(RATE.count - 1):
        await results(await env.fake.press_button(msg, button, user=user))
    response = await (await env.fake.press_button(msg, button, user=user)).wait_response()
    assert response.type == 4 and response.ephemeral and "too fast" in response.message.content


async def test_weak_text_search_says_so(env: Env, service: SearchService, copies_folder: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """With a cut above every score, a text search opens with the weak-match line; with a cut below
    every score, or for an image search, there is none."""
    manifest = service.collection.manifest

    def cut_at(value: float) -> None:
        scale = MatchScale(probes=1, percentiles={"10": value}, weak_percentile=10, weak_below=value)
        monkeypatch.setattr(service.collection, "manifest", dataclasses.replace(manifest, match_scale=scale))

    cut_at(2.0)
    weak = await results(await env.search(env.user(), prompt="an ornament", k=3))
    assert weak.embeds[0]["description"].splitlines()[0] == render.WEAK_MATCH_LINE
    assert len(hit_lines(weak)) == 3
    image = min(copies_folder.rglob("*.jpg"))
    inter = await env.fake.slash_command("imagesearch", options={"k": 3}, user=env.user(), guild=env.lab,
                                         channel="research",
                                         attachments={"image": (image.read_bytes(), "q.jpg", "image/jpeg")})
    assert render.WEAK_MATCH_LINE not in (await results(inter)).embeds[0]["description"]
    cut_at(-2.0)
    strong = await results(await env.search(env.user(), prompt="an ornament", k=3))
    assert render.WEAK_MATCH_LINE not in strong.embeds[0]["description"]
