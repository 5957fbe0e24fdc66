"""Issue 10, items 2-6 in the bot, end to end through the fake Discord.

One bot serves two collections of the tiny CLIP, opened by the real loader from the environment:
`sample` (the shared fixture) and `books` (two books of several illustrations in scattered files,
single illustrations of other books, and files without a British Library name), with the tiny
multilingual text model distilled from that CLIP (IMAGESEARCH_TEXT_MODEL), a blocklist and a
blocked concept. Expected results are computed with search_core directly, for the same inputs.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from PIL import Image

from bot.__main__ import EXIT_CONFIG, main, open_library
from bot.client import ImageBot
from bot.settings import Settings
from search_core.collection import Collection
from search_core.query_expr import parse_query
from search_core.query_vector import encode_expression
from search_core.search import SearchService
from tests.fake_discord import FakeDiscord, FakeInteraction, FakeMessage
from tests.fake_discord.models import snowflake
from tests.fixtures.bot import hit_lines, hit_names, private_reply, results, running_bot
from tests.fixtures.images import bl_file_name, draw_image

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(240)]

BOOK_A, BOOK_B = "000111111", "000222222"
# (book id, volume, page, image number, year): book A spans two volumes, book B has two images on
# one page; they are written to disk in this scrambled order.
BOOK_FILES = [(BOOK_A, 1, 12, 1, 1860), (BOOK_B, 0, 40, 2, 1875), (BOOK_A, 0, 88, 1, 1860),
              (BOOK_A, 0, 7, 1, 1860), (BOOK_B, 0, 40, 1, 1875), (BOOK_A, 1, 3, 1, 1860),
              (BOOK_B, 0, 9, 1, 1875), (BOOK_A, 0, 15, 2, 1860), (BOOK_A, 0, 15, 1, 1860),
              (BOOK_B, 0, 120, 1, 1875), (BOOK_B, 0, 61, 1, 1875)]
SINGLE_YEARS = (1841, 1848, 1853, 1867, 1871, 1882, 1889, 1894, 1898, 1903)
CONCEPT = "a skull"
STEAM_ENGINE = ("eine Dampflokomotive", "une locomotive à vapeur", "паровоз")


def make_books(root: Path) -> dict[str, Path]:
    """The books collection's source folder; returns file name -> path."""
    files = {}
    for i, (book, volume, page, number, year) in enumerate(BOOK_FILES):
        title = "A History of Steam Engines" if book == BOOK_A else "Travels in Africa"
        files[bl_file_name(int(book), volume, page, number, title, year)] = (year, 500 + i)
    for i, year in enumerate(SINGLE_YEARS):
        files[bl_file_name(333000 + i, 0, 1 + i, 1, "Poems", year)] = (year, 600 + i)
    files["engraving-without-a-bl-name.jpg"] = (1880, 700)
    files["another-plain-file.jpg"] = (1880, 701)
    out = {}
    for name, (year, seed) in files.items():
        folder = root / str(year)
        folder.mkdir(parents=True, exist_ok=True)
        draw_image(seed).save(folder / name, "JPEG", quality=90)
        out[name] = folder / name
    return out


def page_order(book: str) -> list[str]:
    rows = sorted((v, p, n, bl_file_name(int(b), v, p, n, "A History of Steam Engines" if b == BOOK_A
                                         else "Travels in Africa", y))
                  for b, v, p, n, y in BOOK_FILES if b == book)
    return [name for *_, name in rows]


class Env:
    def __init__(self, fake: FakeDiscord, bot: ImageBot, lab: Any, audit: Path, books: dict[str, Path]) -> None:
        self.fake, self.bot, self.lab, self.audit, self.books = fake, bot, lab, audit, books
        self._users = 0

    def user(self):
        self._users += 1
        return self.fake.add_user(f"historian{self._users}")

    def service(self, name: str) -> SearchService:
        return self.bot.library.current(name).service

    async def search(self, user: Any = None, attachments: dict | None = None, **options: Any) -> FakeInteraction:
        return await self.fake.slash_command("imagesearch", options=options, user=user or self.user(), guild=self.lab,
                                             channel="research", attachments=attachments)

    async def expected(self, collection: str, prompt: str | None, k: int, subtract: tuple[str, ...] = (),
                       order: str = "relevance", offset: int = 0) -> list[str]:
        """File names search_core returns for the same query."""
        service = self.service(collection)

        def run() -> list[str]:
            vector = encode_expression(service, parse_query(prompt, subtract=subtract)).vector
            page = service.search_page(vector, k=k, offset=offset, order=order)
            return [h.file_name for h in page.hits]

        return await asyncio.to_thread(run)

    async def audit_lines(self) -> list[dict[str, Any]]:
        await asyncio.to_thread(self.bot.audit.close)
        return [json.loads(line) for line in self.audit.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def books_dir(tmp_path_factory: pytest.TempPathFactory, tiny_clip: Path) -> tuple[Path, dict[str, Path]]:
    from scripts.build import build_collection

    root = tmp_path_factory.mktemp("books")
    files = make_books(root / "src")
    build_collection(str(root / "src"), root / "books", model=str(tiny_clip), device="cpu", progress=False)
    return root / "books", files


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(collection_dir: Path, books_dir, tiny_text_model: Path, tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("research-config")
    (tmp / "concepts.txt").write_text(f"{CONCEPT}\n", encoding="utf-8")
    (tmp / "blocklist.txt").write_text("kill\n", encoding="utf-8")
    lab_id = snowflake()
    settings = Settings.from_env({
        "DISCORD_TOKEN": "unused", "IMAGESEARCH_DEVICE": "cpu", "IMAGESEARCH_ALLOWED_GUILDS": str(lab_id),
        "IMAGESEARCH_COLLECTIONS": f"sample={collection_dir},books={books_dir[0]}",
        "IMAGESEARCH_TEXT_MODEL": str(tiny_text_model), "IMAGESEARCH_BLOCKLIST": str(tmp / "blocklist.txt"),
        "IMAGESEARCH_BLOCKED_CONCEPTS": str(tmp / "concepts.txt"), "IMAGESEARCH_AUDIT_LOG": str(tmp / "audit.jsonl"),
        "IMAGESEARCH_RATE_LIMIT": "100/60", "IMAGESEARCH_RELOAD_INTERVAL": "0",
    })
    library = await asyncio.to_thread(open_library, settings)
    async with running_bot(settings, library, {"Lab": (lab_id, ["research"])}) as (fake, bot, guilds):
        yield Env(fake, bot, guilds["Lab"], tmp / "audit.jsonl", books_dir[1])


def years(msg: FakeMessage) -> list[int]:
    return [int(re.search(r"\((\d{4})\)$", line).group(1)) for line in hit_lines(msg)]


def footer(msg: FakeMessage) -> str:
    return msg.embeds[0]["footer"]["text"]


def sheet(msg: FakeMessage) -> Image.Image:
    (attachment,) = msg.attachments
    img = Image.open(io.BytesIO(attachment.data))
    img.load()
    return img


def component(msg: FakeMessage, action: str) -> dict:
    return next(c for row in msg.components for c in row["components"] if c["custom_id"].endswith(f":{action}"))


async def press(env: Env, msg: FakeMessage, action: str, user: Any) -> FakeMessage:
    inter = await env.fake.press_button(msg, component(msg, action)["custom_id"], user=user)
    await inter.wait_response()
    return await inter.wait_followup(60)


# --- Item 2: prompts in 50+ languages ------------------------------------------------------------

async def test_both_collections_use_the_aligned_text_model(env: Env) -> None:
    assert all(env.service(n).text_model is not None for n in ("sample", "books"))
    assert env.service("sample").text_model is env.service("books").text_model


@pytest.mark.parametrize("prompt", STEAM_ENGINE)
async def test_a_prompt_in_another_language_finds_what_the_english_one_finds(env: Env, prompt: str) -> None:
    """Through the bot, a translation ranks the collection as CLIP alone ranks the English prompt."""
    service = env.service("sample")
    clip_only = SearchService(Collection.open(service.collection.path), service.encoder)
    english = [h.file_name for h in (await asyncio.to_thread(clip_only.search, "a steam engine", k=5)).hits]
    got = hit_names(await results(await env.search(prompt=prompt, k=5)))
    assert got[:3] == english[:3] and len(set(got) & set(english)) >= 4


@pytest.mark.parametrize("prompt", ["череп", "ein Totenkopf", "birds in a tree + 头骨"])
async def test_a_blocked_concept_is_refused_in_any_language(env: Env, prompt: str) -> None:
    """The English concept refuses the same subject asked in Russian, German or Chinese, privately."""
    assert "subject that is not allowed" in await private_reply(await env.search(prompt=prompt))


@pytest.mark.parametrize(("which", "message"), [("misaligned", "does not encode into the space"),
                                                ("missing", "Could not load the text model")])
async def test_a_bad_text_model_stops_start_up_in_one_line(capsys: pytest.CaptureFixture[str], collection_dir: Path,
                                                     misaligned_text_model: Path, tmp_path: Path, which: str,
                                                     message: str) -> None:
    model = misaligned_text_model if which == "misaligned" else tmp_path / "nope"
    code = await asyncio.to_thread(main, {"DISCORD_TOKEN": "MTIz.unused-token", "IMAGESEARCH_DEVICE": "cpu",
                                          "IMAGESEARCH_COLLECTION": str(collection_dir),
                                          "IMAGESEARCH_TEXT_MODEL": str(model)})
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.startswith("imagesearch bot:")]
    assert code == EXIT_CONFIG and len(lines) == 1
    assert lines[0].startswith("imagesearch bot: IMAGESEARCH_TEXT_MODEL: ") and message in lines[0]
    assert "Traceback" not in err + out


# --- Item 3: without, and query arithmetic ------------------------------------------------------

async def test_without_subtracts_a_term(env: Env) -> None:
    """`without` is subtracted from the prompt: the results are search_core's for "a ship" minus
    "a steam engine", not those of "a ship"; the title says what was left out."""
    msg = await results(await env.search(prompt="a ship", without="a steam engine", k=8))
    assert hit_names(msg) == await env.expected("sample", "a ship", 8, subtract=("a steam engine",))
    assert hit_names(msg) != await env.expected("sample", "a ship", 8)
    assert "without “a steam engine”" in msg.embeds[0]["title"]


@pytest.mark.parametrize("prompt", ["a ship + birds - a steam engine", "2*a ship - 0.5 * birds",
                                    '"jack-in-the-box" + a ship', "- birds + a ship"])
async def test_arithmetic_in_the_prompt(env: Env, prompt: str) -> None:
    msg = await results(await env.search(prompt=prompt, k=6, collection="books"))
    assert hit_names(msg) == await env.expected("books", prompt, 6)


async def test_only_a_plain_prompt_is_judged_a_weak_match(env: Env) -> None:
    """The weak-match line is for plain prompts, on whose best hits its scale is measured: a prompt
    the collection matches weakly gets it; an expression whose vector would be judged weak (a
    difference scores lower against every image) does not."""
    service = env.service("books")

    def judged_weak(prompt: str) -> bool:
        vector = encode_expression(service, parse_query(prompt)).vector
        return service.search_page(vector, k=3, text_query=True).weak_match is True

    words = ["a ship", "birds", "a cathedral", "a map of London", "a portrait", "an elephant", "a steam engine",
             "flowers", "a battle", "ruins", "a river", "people"]
    plain, expression = await asyncio.to_thread(lambda: (
        next((w for w in words if judged_weak(w)), None),
        next((f"{a} - {b}" for a in words for b in words if a != b and judged_weak(f"{a} - {b}")), None)))
    assert plain is not None and expression is not None, "no weak prompt or expression among the candidates"
    msg = await results(await env.search(prompt=plain, collection="books", k=3))
    assert "Weak match" in msg.embeds[0]["description"]
    msg = await results(await env.search(prompt=expression, collection="books", k=3))
    assert "Weak match" not in msg.embeds[0]["description"]


@pytest.mark.parametrize(("prompt", "where"), [("a ship -people", "character 8"), ("a ship +", "character 8"),
                                               ("a ship + + birds", "character 10"), ('a "ship', "character 3"),
                                               ("0*ship + birds", "character 1")])
async def test_a_malformed_expression_is_answered_privately_with_where(env: Env, prompt: str, where: str) -> None:
    inter = await env.search(prompt=prompt)
    response = await inter.wait_response()
    assert response.type == 4 and response.ephemeral
    assert f"cannot be read at {where}" in response.message.content


@pytest.mark.parametrize("options", [{"prompt": "birds + kill"}, {"prompt": "birds - k1ll"},
                                     {"prompt": "birds", "without": "kill"}, {"prompt": '2*"KILL" + birds'}])
async def test_every_term_is_checked_for_blocked_words(env: Env, options: dict[str, str]) -> None:
    """A blocked word in any term, added, subtracted or in `without`, refuses before any work."""
    inter = await env.search(**options)
    response = await inter.wait_response()
    assert response.type == 4 and response.ephemeral and "not allowed" in response.message.content


async def test_a_concept_in_one_term_is_refused_and_audited_by_part(env: Env) -> None:
    """birds + a skull: the second term is the blocked concept; the audit line says which part."""
    assert "not allowed" in await private_reply(await env.search(prompt="birds + a skull"))
    refused = [e for e in await env.audit_lines() if str(e.get("reason")).startswith("concept:")]
    assert any(e.get("part") == "term 2" and e["terms"] == 2 for e in refused)
    assert not any(CONCEPT in json.dumps(e) for e in refused)


@pytest.mark.parametrize("options", [{"prompt": "a ship - a ship"}, {"prompt": "birds", "without": "birds"}])
async def test_an_expression_that_cancels_out_is_refused_privately(env: Env, options: dict[str, str]) -> None:
    assert "cancel each other out" in await private_reply(await env.search(**options))


@pytest.mark.parametrize("options", [{"prompt": "- birds"}, {"without": "birds"}])
async def test_only_subtracting_is_refused(env: Env, options: dict[str, str]) -> None:
    inter = await env.search(**options)
    response = await inter.wait_response()
    assert response.ephemeral and "only subtracts" in response.message.content


# --- Item 4: more from this book -----------------------------------------------------------------

async def test_more_from_this_book_pages_through_the_book_in_page_order(env: Env) -> None:
    """From a hit of book A, "More from this book" posts the book's illustrations in page order
    (volume, page, image number), paged with the search's k; the message says so."""
    user = env.user()
    target = env.books[page_order(BOOK_A)[3]]
    msg = await results(await env.search(user, collection="books", k=2,
                                         attachments={"image": (target.read_bytes(), "q.jpg", "image/jpeg")}))
    assert hit_names(msg)[0] == target.name
    select = component(msg, "book")
    assert BOOK_A in [o["value"] for o in select["options"]]
    choice = await env.fake.choose_option(msg, select["custom_id"], BOOK_A, user=user)
    listing = await results(choice)
    assert "A History of Steam Engines" in listing.embeds[0]["title"] and BOOK_A in listing.embeds[0]["title"]
    expected = page_order(BOOK_A)
    assert "in page order" in footer(listing) and f"of {len(expected)}" in footer(listing)
    assert component(listing, "book")["disabled"]        # only this book on the page: nothing else to offer
    seen = hit_names(listing)
    while len(seen) < len(expected):
        listing = await press(env, listing, "next", user)
        seen += hit_names(listing)
    assert seen == expected
    assert sheet(listing).height > 0


async def test_the_book_select_offers_each_book_on_the_page_once(env: Env) -> None:
    """A page with every row: one option per book id (book A's seven hits are one option), none
    for files without a British Library name."""
    msg = await results(await env.search(prompt="an engraving", collection="books", k=24))
    assert len(hit_names(msg)) == 23       # 11 book pages, 10 single illustrations, 2 plain files
    values = [o["value"] for o in component(msg, "book")["options"]]
    assert len(values) == len(set(values)) == 12 and {BOOK_A, BOOK_B} <= set(values)


async def test_more_from_this_book_is_rate_limited(env: Env) -> None:
    """The book listing spends the same per-user budget as a search: over it, a private refusal."""
    user = env.user()
    msg = await results(await env.search(user, prompt="a ship", collection="books", k=24))
    while env.bot.limiter.hit(user.id).allowed:
        pass
    choice = await env.fake.choose_option(msg, component(msg, "book")["custom_id"], BOOK_B, user=user)
    response = await choice.wait_response()
    assert response.type == 4 and response.ephemeral and "too fast" in response.message.content


# --- Item 5: order by year -----------------------------------------------------------------------

async def test_year_order_shows_the_top_results_oldest_first_across_pages(env: Env) -> None:
    """order=year at k=3: pages 1-3 are relevance's top 9 from oldest to newest, page 4 starts the
    next 9; the footer and the contact sheet say which order is in force, and paging keeps it."""
    user = env.user()
    top9 = await env.expected("books", "a ship", 9)
    first = await results(await env.search(user, prompt="a ship", collection="books", k=3, order="year"))
    pages = [first]
    for _ in range(3):
        pages.append(await press(env, pages[-1], "next", user))
    run = [n for p in pages[:3] for n in hit_names(p)]
    assert sorted(run) == sorted(top9)
    run_years = [y for p in pages[:3] for y in years(p)]
    assert run_years == sorted(run_years)
    assert all("oldest first within relevance ranks 1-9" in footer(p) for p in pages[:3])
    assert "ranks 10-18" in footer(pages[3]) and not set(hit_names(pages[3])) & set(run)
    assert hit_names(pages[3]) == await env.expected("books", "a ship", 3, order="year", offset=9)
    plain = await results(await env.search(prompt="a ship", collection="books", k=3))
    assert "oldest" not in footer(plain)
    assert sheet(first).height > sheet(plain).height          # the sheet's title line


async def test_more_like_this_keeps_the_year_order(env: Env) -> None:
    user = env.user()
    msg = await results(await env.search(user, prompt="a ship", collection="books", k=4, order="year"))
    select = component(msg, "more")
    choice = await env.fake.choose_option(msg, select["custom_id"], select["options"][0]["value"], user=user)
    more = await results(choice)
    assert "oldest first" in footer(more) and years(more) == sorted(years(more))


# --- Item 6: phone photos ------------------------------------------------------------------------

@pytest.mark.parametrize(("fmt", "content_type"), [("HEIF", "image/heic"), ("HEIF", "image/heif"),
                                                    ("AVIF", "image/avif")])
async def test_a_rotated_phone_photo_finds_the_original(env: Env, sample_images, fmt: str, content_type: str) -> None:
    """A collection image stored sideways with EXIF orientation 6, as a phone stores a portrait
    photo, and attached as HEIC/HEIF/AVIF, is turned upright and finds that image first."""
    original = sample_images[1][7].path
    with Image.open(original) as img:
        stored = img.convert("RGB").transpose(Image.Transpose.ROTATE_90)   # 90 degrees counter-clockwise
    exif = Image.Exif()
    exif[0x0112] = 6                                                       # "rotate 90 clockwise to show"
    buf = io.BytesIO()
    stored.save(buf, fmt, exif=exif.tobytes(), quality=95)
    msg = await results(await env.search(k=1, attachments={"image": (buf.getvalue(), "IMG_0001.HEIC", content_type)}))
    assert hit_names(msg) == [original.name]
