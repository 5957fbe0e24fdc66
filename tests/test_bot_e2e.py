"""End to end: the real bot, in-process, against the fake Discord on 127.0.0.1.

One bot, one model and one collection for the whole module (module-scoped fixtures on a
module-scoped event loop); every test uses users of its own, so the per-user rate limit of one
test never touches another. What is asserted is what a Discord user would see: callback types
and timing, visibility, message text, embeds, the uploaded contact sheet, buttons.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pytest_asyncio
from PIL import Image

from bot import redaction, views
from bot.client import ImageBot
from bot.cogs.guard import CHANNEL_REFUSAL, DM_REFUSAL, GUILD_REFUSAL
from bot.library import Library, edition_of
from bot.settings import CollectionSpec, RateLimit, Settings
from search_core.images import load_query_image
from search_core.moderation import ModerationPolicy
from search_core.search import SearchService
from tests.fake_discord import (
    ATTACH_FILES,
    EMBED_LINKS,
    FakeDiscord,
    FakeInteraction,
    FakeMessage,
    FakeUser,
    permissions_without,
)
from tests.fixtures.bot import results
from tests.fixtures.images import draw_image

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(120)]

RATE = RateLimit(3, 60.0)
BLOCKED_TERM = "kill"
CONCEPT = "a burning ship at sea"
CONCEPT_VARIANT = "  A Burning  SHIP at Sea "
INNOCENT_PROMPTS = ["a ship", "a steam engine", "birds", "skills of the craftsman", "x" * 1000]
FORMAT_SEED = 987_654   # a picture not in the collection, sent in every accepted format
ALLOWED_CHANNELS = ("research", "no-files", "no-embeds", "bare")
# (name, parent channel, private, listed in GUILD_CREATE): threads of an allowed and of another channel.
THREADS = [("ideas", "research", False, True), ("notes", "research", True, True),
           ("unlisted", "research", True, False), ("chat", "general", False, True),
           ("whispers", "general", True, False), ("sheetless", "no-files", False, True)]


# --- Fixtures -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def service(collection_dir: Path) -> SearchService:
    return SearchService.open(collection_dir, device="cpu")


@pytest.fixture(scope="module")
def sample_files(sample_images) -> list[Path]:
    return [s.path for s in sample_images[1]]


@pytest.fixture(scope="module")
def policy_and_images(service: SearchService, sample_files: list[Path]) -> tuple[ModerationPolicy, Path, Path]:
    """A policy whose thresholds are calibrated on this random model: the concept phrase (and a
    re-spaced variant) and exactly one collection image are refused; the test prompts and the other
    images pass. Returns (policy, refused image, an image far from the concept)."""
    enc = service.encoder
    texts = enc.encode_text([CONCEPT, CONCEPT_VARIANT, *INNOCENT_PROMPTS])
    text_scores = texts[1:] @ texts[0]
    assert text_scores[0] > max(text_scores[1:]), "tiny CLIP cannot tell the concept variant from other prompts"
    text_threshold = float(text_scores[0] + max(text_scores[1:])) / 2

    pictures = [load_query_image(p.read_bytes()) for p in sample_files] + [draw_image(FORMAT_SEED)]
    image_scores = enc.encode_images(pictures) @ texts[0]
    order = np.argsort(-image_scores[:-1])
    near, far = int(order[0]), int(order[-1])
    image_threshold = float(image_scores[near] + np.max(np.delete(image_scores, near))) / 2
    policy = ModerationPolicy([BLOCKED_TERM], texts[:1], text_threshold=text_threshold,
                              image_threshold=image_threshold)
    return policy, sample_files[near], sample_files[far]


class LogCapture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


class Env:
    """Everything a test needs: the fake, the running bot, the allowed guild, helpers."""

    def __init__(self, fake: FakeDiscord, bot: ImageBot, lab: Any, stranger: Any, audit: Path,
                 logs: LogCapture, refused_image: Path, far_image: Path, archive: Any) -> None:
        self.fake, self.bot, self.lab, self.stranger, self.archive = fake, bot, lab, stranger, archive
        self.audit, self.logs = audit, logs
        self.refused_image, self.far_image = refused_image, far_image
        self._users = 0

    def user(self) -> FakeUser:
        self._users += 1
        return self.fake.add_user(f"user{self._users}")

    async def search(self, user: FakeUser | None = None, channel: str = "research", guild: Any = "lab",
                     attachments: dict | None = None, **options: Any) -> FakeInteraction:
        return await self.fake.slash_command("imagesearch", options=options, user=user or self.user(),
                                             guild=self.lab if guild == "lab" else guild, channel=channel,
                                             attachments=attachments)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(service, policy_and_images, collection_dir, tmp_path_factory):
    policy, refused_image, far_image = policy_and_images
    logs = LogCapture()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(logs)
    root.setLevel(logging.DEBUG)
    audit = tmp_path_factory.mktemp("audit") / "audit.jsonl"
    async with FakeDiscord() as fake:
        fake.install()
        lab = fake.add_guild("Lab", channels=["research", "general", "no-files", "no-embeds", "bare"])
        stranger = fake.add_guild("Stranger", channels=["lobby"])
        archive = fake.add_guild("Archive", channels=["stacks"])
        fake.set_app_permissions(archive, permissions_without(ATTACH_FILES))   # the whole guild
        for name, parent, private, listed in THREADS:
            await fake.add_thread(lab, name, parent, private=private, listed=listed)
        fake.set_app_permissions(lab, permissions_without(ATTACH_FILES), channel="no-files")
        fake.set_app_permissions(lab, permissions_without(EMBED_LINKS), channel="no-embeds")
        fake.set_app_permissions(lab, permissions_without(ATTACH_FILES, EMBED_LINKS), channel="bare")
        spec = CollectionSpec("sample", collection_dir)
        settings = Settings(discord_token=fake.token, collections=(spec,),
                            allowed_guilds=frozenset({lab.id, archive.id}),
                            allowed_channels=frozenset([*(lab.channels[c] for c in ALLOWED_CHANNELS),
                                                        archive.channels["stacks"]]),
                            rate_limit=RATE, audit_log=audit, device="cpu")
        bot = ImageBot(settings, Library([edition_of(spec, service, policy)]), guild_ready_timeout=0.05)
        task = asyncio.create_task(bot.start(fake.token))
        try:
            await fake.wait_ready()
            await asyncio.wait_for(bot.wait_until_ready(), 10)
            yield Env(fake, bot, lab, stranger, audit, logs, refused_image, far_image, archive)
        finally:
            await bot.close()
            await asyncio.wait_for(task, 10)
            root.removeHandler(logs)
            root.setLevel(old_level)
            redaction.uninstall()   # the bot installed it for the whole process


# --- Helpers --------------------------------------------------------------------------------------

async def results_or_text(inter: FakeInteraction, timeout: float = 30) -> FakeMessage:
    """The public result message, also when it is plain text (no embed)."""
    while True:
        msg = await inter.wait_followup(timeout)
        if not msg.ephemeral and (msg.embeds or msg.content.startswith("**Results")):
            return msg
        if msg.ephemeral and msg.content and not msg.content.startswith("Posting"):
            raise AssertionError(f"refused: {msg.content}")


async def private_reply(inter: FakeInteraction, timeout: float = 30) -> FakeMessage:
    """The first message with text for this interaction; it must be visible to the invoker only."""
    while True:
        msg = await inter.wait_followup(timeout)
        if msg.content or msg.embeds:
            assert msg.ephemeral, f"shown to the channel: {msg.content!r}"
            assert not msg.embeds and not msg.attachments
            return msg


def hit_lines(msg: FakeMessage) -> list[str]:
    """The description's hit lines ("**1.** `file` ..."), without a weak-match line above them."""
    return [line for line in msg.embeds[0]["description"].splitlines() if line.startswith("**")]


def sheet(msg: FakeMessage) -> Image.Image:
    (attachment,) = msg.attachments
    img = Image.open(io.BytesIO(attachment.data))
    img.load()
    return img


def png_bytes(img: Image.Image, fmt: str = "PNG", **kwargs: Any) -> bytes:
    out = io.BytesIO()
    img.save(out, fmt, **kwargs)
    return out.getvalue()


def select_id(msg: FakeMessage) -> str:
    return next(c["custom_id"] for row in msg.components for c in row["components"] if c.get("type") == 3)


def button_id(msg: FakeMessage, action: str) -> str:
    return next(cid for cid in msg.custom_ids if cid.endswith(f":{action}"))


def public_messages(fake: FakeDiscord, inter: FakeInteraction) -> list[FakeMessage]:
    return [m for m in inter.messages if not m.ephemeral and (m.content or m.embeds)]


# --- Registration and access ----------------------------------------------------------------------

async def test_command_registered_with_described_options(env: Env) -> None:
    """/imagesearch is registered in the allowed guild (not globally) with prompt, without, image,
    k (1-25), year_from, year_to, order (relevance or year) and collection (autocompleted), each
    described."""
    assert env.fake.commands() == []
    (command,) = [c for c in env.fake.commands(env.lab.id) if c["name"] == "imagesearch"]
    options = {o["name"]: o for o in command["options"]}
    assert list(options) == ["prompt", "without", "image", "k", "year_from", "year_to", "order", "collection"]
    assert [c["value"] for c in options["order"]["choices"]] == ["relevance", "year"]
    assert options["collection"]["autocomplete"] and options["collection"]["type"] == 3
    assert (options["prompt"]["type"], options["image"]["type"], options["k"]["type"]) == (3, 11, 4)
    assert (options["k"]["min_value"], options["k"]["max_value"]) == (1, 25)
    assert all(o["description"] and not o.get("required") for o in options.values())


async def test_guild_not_allowed_is_left_at_start(env: Env) -> None:
    """A guild the bot was already in but is not allowlisted is left at start-up."""
    for _ in range(100):
        if env.stranger.id in env.fake.left_guilds:
            break
        await asyncio.sleep(0.05)
    assert env.stranger.id in env.fake.left_guilds
    assert env.lab.id not in env.fake.left_guilds


async def test_guild_added_later_is_left(env: Env) -> None:
    """Inviting the bot to a guild that is not allowlisted makes it leave at once."""
    other = await env.fake.add_guild_later("Elsewhere", channels=["chat"])
    for _ in range(100):
        if other.id in env.fake.left_guilds:
            break
        await asyncio.sleep(0.05)
    assert other.id in env.fake.left_guilds


@pytest.mark.parametrize("place, expected", [("guild", GUILD_REFUSAL), ("dm", DM_REFUSAL),
                                             ("channel", CHANNEL_REFUSAL)])
async def test_refused_outside_allowed_places(env: Env, place: str, expected: str) -> None:
    """A non-allowed guild, a DM and a channel outside the allowlist each get a private refusal."""
    # The bot registers /imagesearch only in allowed guilds; a copy elsewhere (left by an older
    # version, or a client's stale cache) must still be refused if it is used.
    (command,) = env.fake.commands(env.lab.id)
    for scope in (env.stranger.id, None):
        copy = {k: v for k, v in command.items() if k != "guild_id"} | ({"guild_id": str(scope)} if scope else {})
        env.fake.registered_commands.setdefault(scope, {}).setdefault("imagesearch", copy)
    if place == "guild":
        inter = await env.search(guild=env.stranger, channel="lobby", prompt="a ship")
    elif place == "dm":
        inter = await env.search(guild=None, channel=None, prompt="a ship")
    else:
        inter = await env.search(channel="general", prompt="a ship")
    response = await inter.wait_response()
    assert response.type == 4 and response.ephemeral
    assert response.message.content == expected


@pytest.mark.parametrize(("thread", "parent", "private", "listed"), THREADS)
async def test_threads_count_as_their_parent_channel(env: Env, thread: str, parent: str, private: bool,
                                                     listed: bool) -> None:
    """A search in a thread (public or private, known from GUILD_CREATE or only from the interaction)
    of an allowed channel is answered in the thread; in a thread of another channel it is refused
    privately."""
    inter = await env.search(channel=thread, prompt="a ship", k=2)
    if parent in ALLOWED_CHANNELS:
        msg = await results(inter)
        assert msg.channel_id == env.lab.threads[thread].id and len(hit_lines(msg)) == 2
    else:
        response = await inter.wait_response()
        assert response.type == 4 and response.ephemeral and response.message.content == CHANNEL_REFUSAL


# --- Searching ------------------------------------------------------------------------------------

async def test_text_query_defers_then_posts_contact_sheet(env: Env, sample_files: list[Path]) -> None:
    """A prompt is acknowledged within 3 s (privately), then answered publicly with a decodable sheet
    and one line per hit naming a collection file."""
    inter = await env.search(prompt="a ship", k=4)
    response = await inter.wait_response(timeout=3)
    assert response.type == 5 and response.elapsed < 3
    msg = await results(inter)
    img = sheet(msg)
    assert img.width > 0 and img.height > 0
    assert msg.embeds[0]["image"]["url"] == f"attachment://{msg.attachments[0].filename}"
    lines = hit_lines(msg)
    assert len(lines) == 4
    names = {p.name for p in sample_files}
    assert all(any(name in line for name in names) for line in lines)
    assert not any(m.ephemeral is False and m.content.startswith("Posting") for m in inter.messages)


async def test_image_query_ranks_that_image_first(env: Env) -> None:
    """Attaching one of the collection's own images puts that image at rank 1."""
    path = env.far_image
    inter = await env.search(attachments={"image": (path.read_bytes(), "query.jpg", "image/jpeg")}, k=3)
    msg = await results(inter)
    assert path.name in hit_lines(msg)[0]


async def test_prompt_and_image_together_are_one_query(env: Env) -> None:
    """A prompt and an image in one command give one result message."""
    path = env.far_image
    inter = await env.search(prompt="a ship", attachments={"image": (path.read_bytes(), "q.jpg", "image/jpeg")})
    msg = await results(inter)
    assert "a ship" in msg.embeds[0]["title"] and "attached image" in msg.embeds[0]["title"]


async def test_an_attachments_file_name_never_reaches_the_channel(env: Env) -> None:
    """The file name is the user's unmoderated text: an image named after a blocked word is searched,
    but its name is not posted anywhere public."""
    path = env.far_image
    name = f"{BLOCKED_TERM}-them-all.jpg"
    inter = await env.search(attachments={"image": (path.read_bytes(), name, "image/jpeg")}, k=3)
    msg = await results(inter)
    public_text = json.dumps([m.content for m in public_messages(env.fake, inter)] + [msg.content, msg.embeds])
    assert BLOCKED_TERM not in public_text.lower()


async def test_year_filter(env: Env) -> None:
    """year_from/year_to keep only hits from those years."""
    inter = await env.search(prompt="a ship", year_from=1870, year_to=1870, k=9)
    lines = hit_lines(await results(inter))
    assert lines and all("(1870)" in line for line in lines)


@pytest.mark.parametrize("fmt, kwargs", [("WEBP", {}), ("GIF", {"save_all": True}), ("BMP", {}),
                                         ("TIFF", {}), ("PNG", {}), ("HEIF", {}), ("AVIF", {})])
async def test_accepted_image_formats(env: Env, fmt: str, kwargs: dict) -> None:
    """WebP, GIF (first frame), BMP, TIFF, PNG and phone photos (HEIC, AVIF) attachments are searched."""
    img = draw_image(FORMAT_SEED)
    if fmt == "GIF":
        kwargs = {**kwargs, "append_images": [draw_image(FORMAT_SEED + 1)]}
    data = png_bytes(img, fmt, **kwargs)
    inter = await env.search(attachments={"image": (data, f"q.{fmt.lower()}", f"image/{fmt.lower()}")}, k=2)
    assert len(hit_lines(await results(inter))) == 2


# --- Where the bot lacks permissions -------------------------------------------------------------

@pytest.mark.parametrize(("guild", "channel"), [("lab", "no-files"), ("archive", "stacks"), ("lab", "sheetless")])
async def test_without_attach_files_results_come_without_the_sheet_and_say_why(env: Env, guild: str,
                                                                               channel: str) -> None:
    """Where the bot may not attach files (one channel, a whole guild, a thread of such a channel)
    the results still come (no sheet, no image in the embed) with a note naming the missing
    permission; paging keeps working the same way."""
    user = env.user()
    msg = await results(await env.search(user=user, guild=getattr(env, guild), channel=channel, prompt="a ship", k=3))
    assert msg.attachments == [] and "image" not in msg.embeds[0]
    assert len(hit_lines(msg)) == 3 and "Attach Files" in msg.content
    press = await env.fake.press_button(msg, button_id(msg, "next"), user=user)
    await press.wait_response()
    page2 = await press.wait_followup()
    assert page2.attachments == [] and hit_lines(page2)[0].startswith("**4.**")


async def test_without_embed_links_results_are_plain_text(env: Env) -> None:
    """Where the bot may not embed, the same hit lines come as message text, with the sheet and a note."""
    msg = await results_or_text(await env.search(channel="no-embeds", prompt="a ship", k=3))
    assert msg.embeds == [] and "Embed Links" in msg.content
    assert sum(line.startswith(("**1.**", "**2.**", "**3.**")) for line in msg.content.splitlines()) == 3
    assert len(msg.attachments) == 1


async def test_with_neither_permission_results_are_text_only(env: Env) -> None:
    msg = await results_or_text(await env.search(channel="bare", prompt="a ship", k=25))
    assert msg.embeds == [] and msg.attachments == [] and len(msg.content) <= 2000
    assert "Attach Files" in msg.content and "Embed Links" in msg.content and "**1.**" in msg.content


# --- Paging and more like this --------------------------------------------------------------------

async def test_next_and_previous_pages(env: Env) -> None:
    """Next shows ranks 5-8 in the same message; Previous returns to 1-4; Previous starts disabled."""
    user = env.user()
    inter = await env.search(user=user, prompt="a steam engine", k=4)
    msg = await results(inter)
    first_page = hit_lines(msg)
    prev_button = next(b for b in msg.buttons if b["custom_id"].endswith(":prev"))
    assert prev_button.get("disabled")

    press = await env.fake.press_button(msg, button_id(msg, "next"), user=user)
    assert (await press.wait_response()).type == 6
    page2 = await press.wait_followup()
    assert page2.id == msg.id
    assert [line.split(".**")[0] for line in hit_lines(page2)] == ["**5", "**6", "**7", "**8"]
    assert set(hit_lines(page2)).isdisjoint(first_page)
    sheet(page2)

    press = await env.fake.press_button(page2, button_id(page2, "prev"), user=user)
    await press.wait_response()
    assert hit_lines(await press.wait_followup()) == first_page


async def test_a_press_while_a_page_is_drawn_is_dropped(env: Env) -> None:
    """Two quick presses of Next: both are acknowledged, one page is drawn (page 2), and nothing
    queues a second render on the model thread."""
    user = env.user()
    msg = await results(await env.search(user=user, prompt="a steam engine", k=4))
    edits_before = env.fake.live_message(msg).edits
    first = await env.fake.press_button(msg, button_id(msg, "next"), user=user)
    second = await env.fake.press_button(msg, button_id(msg, "next"), user=user)
    assert (await first.wait_response()).type == 6 and (await second.wait_response()).type == 6
    await asyncio.sleep(1.5)   # ample time for a second render, were one queued
    live = env.fake.live_message(msg)
    assert live.edits - edits_before == 1
    assert [line.split(".**")[0] for line in hit_lines(live)] == ["**5", "**6", "**7", "**8"]


def count_worker_jobs(env: Env, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the jobs queued on the bot's model thread from now on."""
    jobs: list[str] = []
    run_blocking = env.bot.run_blocking

    async def counted(fn, /, *args, **kwargs):
        jobs.append(getattr(fn, "__name__", repr(fn)))
        return await run_blocking(fn, *args, **kwargs)

    monkeypatch.setattr(env.bot, "run_blocking", counted)
    return jobs


async def use_up_the_rate_limit_with_pages(env: Env, user: FakeUser) -> FakeMessage:
    """A search, then Next until the user's budget (RATE.count actions) is spent."""
    msg = await results(await env.search(user=user, prompt="a steam engine", k=4))
    for _ in range(RATE.count - 1):
        press = await env.fake.press_button(msg, button_id(msg, "next"), user=user)
        assert (await press.wait_response()).type == 6
        msg = await press.wait_followup()
    return msg


@pytest.mark.parametrize("action", ["next", "prev", "more"])
async def test_pager_actions_count_against_the_rate_limit(env: Env, monkeypatch: pytest.MonkeyPatch,
                                                          action: str) -> None:
    """Previous, Next and "more like this" spend the same per-user budget as a search: past it, a
    press gets a private "too fast" answer, the results are not redrawn and no work is queued."""
    user = env.user()
    msg = await use_up_the_rate_limit_with_pages(env, user)
    edits = env.fake.live_message(msg).edits
    jobs = count_worker_jobs(env, monkeypatch)
    if action == "more":
        press = await env.fake.choose_option(msg, select_id(msg), msg.selects[0]["options"][0]["value"], user=user)
    else:
        press = await env.fake.press_button(msg, button_id(msg, action), user=user)
    response = await press.wait_response()
    assert response.type == 4 and response.ephemeral and "too fast" in response.message.content
    await asyncio.sleep(0.5)   # time for a render, were one queued
    assert jobs == [] and env.fake.live_message(msg).edits == edits
    assert not public_messages(env.fake, press)


async def test_pages_and_searches_share_one_budget(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """A user who spent the budget on pages cannot start a new search either (and vice versa)."""
    user = env.user()
    await use_up_the_rate_limit_with_pages(env, user)
    jobs = count_worker_jobs(env, monkeypatch)
    response = await (await env.search(user=user, prompt="birds", k=1)).wait_response()
    assert response.type == 4 and response.ephemeral and "too fast" in response.message.content
    assert jobs == []


async def test_only_the_invoker_may_page(env: Env) -> None:
    """Another user pressing Next gets a private note and the message does not change."""
    owner, other = env.user(), env.user()
    msg = await results(await env.search(user=owner, prompt="birds", k=2))
    press = await env.fake.press_button(msg, button_id(msg, "next"), user=other)
    response = await press.wait_response()
    assert response.type == 4 and response.ephemeral and "Only the person" in response.message.content
    assert env.fake.live_message(msg).edits == msg.edits


async def test_more_like_this_posts_new_results_without_the_source(env: Env) -> None:
    """Choosing a hit in "More like this" posts a new public result message that leaves that hit out."""
    user = env.user()
    msg = await results(await env.search(user=user, prompt="a ship", k=4))
    first = env.fake.live_message(msg)
    select = next(c for row in first.components for c in row["components"] if c.get("type") == 3)
    chosen = select["options"][0]
    inter = await env.fake.choose_option(msg, select["custom_id"], chosen["value"], user=user)
    more = await results(inter)
    assert more.id != msg.id and "more like" in more.embeds[0]["title"]
    assert all(chosen["description"] not in line for line in hit_lines(more))


async def test_expired_pager_disables_buttons_and_explains(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """After the view's timeout the buttons are disabled, and a late press gets a private note."""
    monkeypatch.setattr(views, "VIEW_TIMEOUT", 0.5)
    user = env.user()
    msg = await results(await env.search(user=user, prompt="birds", k=2))
    for _ in range(60):
        live = env.fake.live_message(msg)
        if live.buttons and all(b.get("disabled") for b in live.buttons):
            break
        await asyncio.sleep(0.1)
    assert all(b.get("disabled") for b in env.fake.live_message(msg).buttons)
    press = await env.fake.press_button(msg, button_id(msg, "next"), user=user, allow_disabled=True)
    response = await press.wait_response()
    assert response.ephemeral and response.message.content == views.EXPIRED


# --- Bad input ------------------------------------------------------------------------------------

def bomb_png() -> bytes:
    """A small file that decodes to 400 megapixels."""
    return png_bytes(Image.new("1", (20_000, 20_000)))


BAD_ATTACHMENTS = {
    "text-file": (b"hello, not an image", "notes.txt", "text/plain"),
    "pdf-named-png": (b"%PDF-1.4\n" + b"0" * 200, "x.png", "image/png"),
    "corrupt": (b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4, "x.jpg", "image/jpeg"),
    "truncated": (None, "x.png", "image/png"),
    "zero-byte": (b"", "x.png", "image/png"),
    "oversize": (b"\x89PNG" + b"\0" * (11 * 1024 * 1024), "huge.png", "image/png"),
    "bomb": (None, "bomb.png", "image/png"),
}


@pytest.mark.parametrize("kind", list(BAD_ATTACHMENTS))
async def test_bad_attachment_refused_privately_and_bot_recovers(env: Env, kind: str) -> None:
    """Each bad attachment kind gets a private error, nothing public, and the user's next search works."""
    data, name, content_type = BAD_ATTACHMENTS[kind]
    if kind == "truncated":
        full = png_bytes(draw_image(5, size=(200, 150)))
        data = full[: len(full) // 2]
    elif kind == "bomb":
        data = bomb_png()
    user = env.user()
    inter = await env.search(user=user, attachments={"image": (data, name, content_type)})
    reply = await private_reply(inter)
    assert reply.content and "Something went wrong" not in reply.content
    assert not public_messages(env.fake, inter)
    assert len(hit_lines(await results(await env.search(user=user, prompt="a ship", k=2)))) == 2


async def test_oversize_attachment_is_not_downloaded(env: Env) -> None:
    """An attachment over the size cap is refused from its declared size, before any download."""
    downloads_before = len(env.fake.cdn_requests)
    data, name, content_type = BAD_ATTACHMENTS["oversize"]
    inter = await env.search(attachments={"image": (data, name, content_type)})
    response = await inter.wait_response()
    assert response.type == 4 and response.ephemeral and "too large" in response.message.content
    assert len(env.fake.cdn_requests) == downloads_before


async def test_empty_prompt_refused(env: Env) -> None:
    """A blank prompt with no image is refused privately before deferring."""
    response = await (await env.search(prompt="   ")).wait_response()
    assert response.type == 4 and response.ephemeral and "prompt" in response.message.content


async def test_reversed_years_refused_before_deferring(env: Env) -> None:
    """year_from after year_to is a private sentence naming both years, answered at once."""
    response = await (await env.search(prompt="a ship", year_from=1900, year_to=1850)).wait_response()
    assert response.type == 4 and response.ephemeral
    assert "1900" in response.message.content and "1850" in response.message.content


async def test_2000_character_prompt_refused_clearly(env: Env) -> None:
    """A 2,000-character paste gets a private sentence about the length, not an error or a crash."""
    response = await (await env.search(prompt="ship " * 400)).wait_response()
    assert response.type == 4 and response.ephemeral and "too long" in response.message.content


# --- Moderation -----------------------------------------------------------------------------------

@pytest.mark.parametrize("prompt", ["a man about to kill a dragon", "a man about to k1ll a dragon"])
async def test_blocked_term_and_evasion_refused_without_echo(env: Env, prompt: str) -> None:
    """A blocked term, and a leetspeak spelling of it, are refused privately without repeating it."""
    inter = await env.search(prompt=prompt)
    response = await inter.wait_response()
    assert response.type == 4 and response.ephemeral
    assert "kill" not in response.message.content.lower() and "dragon" not in response.message.content


async def test_innocent_word_containing_blocked_term_passes(env: Env) -> None:
    """"skills" contains the blocked "kill" but is searched."""
    assert hit_lines(await results(await env.search(prompt="skills of the craftsman", k=2)))


async def test_blocked_concept_prompt_refused_privately(env: Env) -> None:
    """A prompt whose meaning is a blocked concept is refused after deferral, privately, nothing public."""
    inter = await env.search(prompt=CONCEPT_VARIANT)
    response = await inter.wait_response()
    assert response.type == 5 and response.ephemeral
    reply = await private_reply(inter)
    assert "burning" not in reply.content.lower() and "ship" not in reply.content.lower()
    assert not public_messages(env.fake, inter)


async def test_blocked_concept_image_refused_privately(env: Env) -> None:
    """An attached image close to a blocked concept is refused privately."""
    data = env.refused_image.read_bytes()
    inter = await env.search(attachments={"image": (data, "q.jpg", "image/jpeg")})
    reply = await private_reply(inter)
    assert "image" in reply.content
    assert not public_messages(env.fake, inter)


async def test_rate_limit_per_user(env: Env) -> None:
    """A user past the limit is refused privately; another user is answered meanwhile."""
    user, other = env.user(), env.user()
    for _ in range(RATE.count):
        await results(await env.search(user=user, prompt="birds", k=1))
    response = await (await env.search(user=user, prompt="birds", k=1)).wait_response()
    assert response.type == 4 and response.ephemeral and "too fast" in response.message.content
    assert hit_lines(await results(await env.search(user=other, prompt="birds", k=1)))


# --- Load and resilience --------------------------------------------------------------------------

async def test_thirty_users_at_once(env: Env) -> None:
    """30 simultaneous searches are all acknowledged within 3 s and all answered; heartbeats keep flowing."""
    started = time.monotonic()
    inters = await asyncio.gather(*(env.search(prompt=f"a ship number {i}", k=2) for i in range(30)))
    responses = await asyncio.gather(*(i.wait_response(timeout=3) for i in inters))
    assert all(r.type == 5 and r.elapsed < 3 for r in responses)
    messages = await asyncio.gather(*(results(i, timeout=60) for i in inters))
    assert all(len(hit_lines(m)) == 2 for m in messages)
    # No stall: with a 1 s heartbeat, no 3 s stretch of the run went without an acknowledged beat.
    acks = env.fake.heartbeat_acks
    timeline = [max([a for a in acks if a <= started], default=started),
                *[a for a in acks if a > started], time.monotonic()]
    assert max(np.diff(timeline)) < 3.0


@pytest.mark.parametrize("status", [429, 500])
async def test_discord_error_on_followup_survived(env: Env, status: int) -> None:
    """A 429 or a 500 on the results follow-up is retried and the user still gets the results."""
    env.fake.fail_next("POST", r"^/webhooks/\d+/[^/]+$", status=status, times=1, retry_after=0.2)
    msg = await results(await env.search(prompt="a ship", k=2), timeout=30)
    assert len(hit_lines(msg)) == 2
    assert any(r.status == status for r in env.fake.requests if r.method == "POST" and "/webhooks/" in r.path)


async def test_gateway_drop_resumes_and_answers(env: Env) -> None:
    """After the websocket drops, the bot resumes its session and answers the next search."""
    resumes = env.fake.resumes
    await env.fake.drop_gateway(resumable=True)
    assert env.fake.resumes == resumes + 1
    assert hit_lines(await results(await env.search(prompt="a ship", k=1)))


# --- Secrets and audit (last: reads everything the module produced) -------------------------------

async def test_audit_log_records_decisions_without_prompts(env: Env) -> None:
    """The audit log has allowed and refused entries with who and where, never a refused prompt's text."""
    entries = [json.loads(line) for line in env.audit.read_text(encoding="utf-8").splitlines()]
    reasons = {e["reason"] for e in entries}
    assert any(e["allowed"] for e in entries)
    assert {"rate_limited", "guild_not_allowed", "dm", "channel_not_allowed"} <= reasons
    assert any(str(r).startswith("term:") for r in reasons) and any(str(r).startswith("concept:") for r in reasons)
    text = env.audit.read_text(encoding="utf-8")
    assert "dragon" not in text and "k1ll" not in text and "Burning" not in text
    assert all("user" in e and "guild" in e for e in entries)


async def test_token_appears_nowhere(env: Env, capfd: pytest.CaptureFixture[str]) -> None:
    """The bot token is in no log record (DEBUG included, every discord.py logger uncapped here),
    no audit line, no output, no message sent; no interaction token is in any log record either."""
    token = env.fake.token
    out, err = capfd.readouterr()
    assert token not in out + err
    assert any("discord.webhook.async_" in line for line in env.logs.lines)
    assert env.logs.lines and not any(token in line for line in env.logs.lines)
    interaction_tokens = [inter.token for inter in env.fake.interactions.values()]
    assert len(interaction_tokens) > 100
    assert not [t for t in interaction_tokens if any(t in line for line in env.logs.lines)]
    assert token not in env.audit.read_text(encoding="utf-8")
    assert token not in repr(env.bot.settings)
    for request in env.fake.requests:
        assert token not in json.dumps(request.json, default=str)


async def test_entry_point_reports_a_refused_token_in_one_line(env: Env, collection_dir: Path,
                                                               capfd: pytest.CaptureFixture[str]) -> None:
    """`imagesearch bot` with a token Discord refuses exits non-zero with one line naming DISCORD_TOKEN."""
    from bot.__main__ import main

    wrong = "WRONG.token-value-for-this-test"
    code = await asyncio.to_thread(main, {"DISCORD_TOKEN": wrong, "IMAGESEARCH_COLLECTION": str(collection_dir),
                                          "IMAGESEARCH_DEVICE": "cpu",
                                          "IMAGESEARCH_ALLOWED_GUILDS": str(env.lab.id)})
    out, err = capfd.readouterr()
    assert code != 0
    lines = [line for line in err.splitlines() if line.startswith("imagesearch bot:")]
    assert len(lines) == 1 and "DISCORD_TOKEN" in lines[0]
    assert "Traceback" not in out + err and wrong not in out + err


async def test_an_attachment_that_cannot_be_downloaded_gets_a_clear_private_message(env: Env, monkeypatch) -> None:
    """A 404 from Discord's CDN (the upload expired or was deleted) is the user's problem to fix, said
    privately; it is not an 'interaction gone' that leaves "thinking…" hanging forever."""

    class Vanished(dict):
        def get(self, key: Any, default: Any = None) -> Any:
            return None

    path = env.far_image
    monkeypatch.setattr(env.fake, "attachments", Vanished(env.fake.attachments))
    inter = await env.search(attachments={"image": (path.read_bytes(), "q.jpg", "image/jpeg")})
    reply = await private_reply(inter)
    assert "could not be downloaded" in reply.content
    assert not public_messages(env.fake, inter)


async def test_a_broken_collection_is_not_described_to_the_user(env: Env, monkeypatch) -> None:
    """A CollectionError (its text is for operators and may hold server paths) reaches the user as
    'Something went wrong (ref …)' only; the details go to the log with the same ref."""
    from search_core.errors import CollectionError

    def broken(row: int, size: int) -> Any:
        raise CollectionError("Cannot read image 3 in /srv/private/collection/dataset: gone")

    monkeypatch.setattr(env.bot.library.current("sample").service.collection, "thumbnail", broken)   # what a results page reads
    inter = await env.search(prompt="a ship")
    reply = await private_reply(inter)
    assert reply.content.startswith("Something went wrong (ref ")
    assert "/srv/private" not in reply.content
    ref = reply.content.split("ref ")[1][:4]
    assert any(ref in line for line in env.logs.lines)
