"""Several collections in one bot (issue 10, item 1), end to end through the fake Discord.

Three collections, opened by the real loader (`bot.__main__.open_library`) from the environment:
`sample` and `annex` embedded with one tiny CLIP, `maps` with another. The server "Lab" may search
only annex and sample (annex first: its default); "Archive" may search all three.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from bot.__main__ import open_library
from bot.client import ImageBot
from bot.library import UNKNOWN_COLLECTION
from bot.settings import Settings
from tests.fake_discord import FakeDiscord, FakeInteraction, FakeMessage
from tests.fake_discord.models import snowflake
from tests.fixtures.bot import hit_lines, private_reply, results, running_bot
from tests.fixtures.images import make_imagefolder
from tests.fixtures.tiny_clip import build_tiny_clip

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(180)]

CONCEPT = "a burning ship at sea"


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory, tiny_clip: Path, collection_dir: Path) -> dict[str, Path]:
    """sample (the shared fixture), annex (same model), maps (another model, other years)."""
    from scripts.build import build_collection

    root = tmp_path_factory.mktemp("several")
    other_clip = build_tiny_clip(root / "other_clip", seed=1)
    make_imagefolder(root / "maps-src", n=12, years=(1790, 1800, 1810), seed=7)
    make_imagefolder(root / "annex-src", n=6, years=(1910,), seed=3)
    build_collection(str(root / "maps-src"), root / "maps", model=str(other_clip), device="cpu", progress=False)
    build_collection(str(root / "annex-src"), root / "annex", model=str(tiny_clip), device="cpu", progress=False)
    return {"sample": collection_dir, "maps": root / "maps", "annex": root / "annex"}


def file_names(folder: Path) -> set[str]:
    from datasets import load_from_disk

    return set(load_from_disk(str(folder / "dataset"))["file_name"])


class Env:
    def __init__(self, fake: FakeDiscord, bot: ImageBot, lab: Any, archive: Any, audit: Path,
                 folders: dict[str, Path], hidden: str) -> None:
        self.fake, self.bot, self.lab, self.archive, self.audit = fake, bot, lab, archive, audit
        self.folders, self.hidden = folders, hidden
        self.names = {name: file_names(path) for name, path in folders.items()}
        self._users = 0

    def user(self):
        self._users += 1
        return self.fake.add_user(f"reader{self._users}")

    async def search(self, guild: Any = None, attachments: dict | None = None, **options: Any) -> FakeInteraction:
        guild = guild or self.lab
        return await self.fake.slash_command("imagesearch", options=options, user=self.user(), guild=guild,
                                             channel=next(iter(guild.channels)), attachments=attachments)

    async def choices(self, guild: Any, typed: str = "", channel: str | None = None) -> list[dict[str, str]]:
        inter = await self.fake.autocomplete("imagesearch", "collection", {"collection": typed}, user=self.user(),
                                             guild=guild, channel=channel or next(iter(guild.channels)))
        response = await inter.wait_response()
        assert response.type == 8
        return response.data["choices"]

    async def audit_lines(self) -> list[dict[str, Any]]:
        await asyncio.to_thread(self.bot.audit.close)    # every queued line on disk
        return [json.loads(line) for line in self.audit.read_text(encoding="utf-8").splitlines()]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(folders: dict[str, Path], tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("several-config")
    concepts = tmp / "concepts.txt"
    concepts.write_text(f"danger: {CONCEPT}\n", encoding="utf-8")
    hidden_name = sorted(file_names(folders["maps"]))[4]
    hidden = tmp / "hidden.txt"
    hidden.write_text(hidden_name + "\n", encoding="utf-8")
    audit = tmp / "audit.jsonl"
    lab_id, archive_id = snowflake(), snowflake()
    settings = Settings.from_env({
        "DISCORD_TOKEN": "unused.until-the-fake-gives-one", "IMAGESEARCH_DEVICE": "cpu",
        "IMAGESEARCH_COLLECTIONS": ",".join(f"{name}={path}" for name, path in folders.items()),
        "IMAGESEARCH_ALLOWED_GUILDS": f"{lab_id},{archive_id}",
        "IMAGESEARCH_GUILD_COLLECTIONS": f"{lab_id}:annex|sample",
        "IMAGESEARCH_BLOCKED_CONCEPTS": str(concepts), "IMAGESEARCH_CONCEPT_THRESHOLD": "0.99",
        "IMAGESEARCH_IMAGE_CONCEPT_THRESHOLD": "1", "IMAGESEARCH_HIDDEN": str(hidden),
        "IMAGESEARCH_AUDIT_LOG": str(audit), "IMAGESEARCH_RATE_LIMIT": "100/60", "IMAGESEARCH_RELOAD_INTERVAL": "0",
    })
    library = open_library(settings)
    guilds = {"Lab": (lab_id, ["research"]), "Archive": (archive_id, ["stacks"])}
    async with running_bot(settings, library, guilds) as (fake, bot, added):
        yield Env(fake, bot, added["Lab"], added["Archive"], audit, folders, hidden_name)


def hit_files(msg: FakeMessage, names: set[str]) -> list[str]:
    lines = hit_lines(msg)
    found = [next((n for n in names if n in line), None) for line in lines]
    assert None not in found, f"a hit is not from the expected collection: {lines}"
    return found


# --- Loading --------------------------------------------------------------------------------------

async def test_collections_of_one_model_share_it(env: Env) -> None:
    """sample and annex were embedded with the same model: one encoder serves both; maps has its own."""
    library = env.bot.library
    sample, annex, maps = (library.current(n) for n in ("sample", "annex", "maps"))
    assert sample.service.encoder is annex.service.encoder
    assert maps.service.encoder is not sample.service.encoder
    assert sample.policy is annex.policy and maps.policy is not sample.policy


async def test_the_text_model_serves_the_collections_it_is_aligned_with(folders: dict[str, Path],
                                                                        tiny_text_model: Path) -> None:
    """IMAGESEARCH_TEXT_MODEL, distilled from sample's CLIP, encodes prompts for sample and annex
    (loaded once); maps, of another CLIP, keeps its own text encoder and is still searched."""
    settings = Settings.from_env({"DISCORD_TOKEN": "x", "IMAGESEARCH_DEVICE": "cpu",
                                  "IMAGESEARCH_TEXT_MODEL": str(tiny_text_model), "IMAGESEARCH_COLLECTIONS":
                                  ",".join(f"{name}={path}" for name, path in folders.items())})
    library = await asyncio.to_thread(open_library, settings)
    sample, annex, maps = (library.current(n) for n in ("sample", "annex", "maps"))
    assert sample.service.text_model is not None and annex.service.text_model is sample.service.text_model
    assert maps.service.text_model is None
    page = await asyncio.to_thread(maps.service.search, "eine Dampflokomotive", k=3)
    assert len(page.hits) == 3


async def test_each_model_embeds_its_own_concepts(env: Env) -> None:
    """Blocked concepts are embedded by each collection's own model: the concept phrase as maps'
    model encodes it is refused by maps' policy, and means nothing to the other model's policy."""
    maps, sample = env.bot.library.current("maps"), env.bot.library.current("sample")
    vector = maps.service.encoder.encode_text([CONCEPT])[0]
    assert not maps.policy.check_vector(vector, kind="text").allowed
    assert sample.policy.check_vector(vector, kind="text").allowed


# --- Autocomplete ---------------------------------------------------------------------------------

async def test_autocomplete_offers_only_this_servers_collections(env: Env) -> None:
    """Lab sees annex and sample (its order), with rows and years; Archive sees all three."""
    lab = await env.choices(env.lab)
    assert [c["value"] for c in lab] == ["annex", "sample"]
    assert lab[0]["name"] == "annex · 6 images · 1910"
    assert lab[1]["name"] == "sample · 24 images · 1850–1900"
    archive = await env.choices(env.archive)
    assert [c["value"] for c in archive] == ["sample", "maps", "annex"]
    assert archive[1]["name"] == "maps · 12 images · 1790–1810"


@pytest.mark.parametrize("typed, expected", [("MA", ["maps"]), (" s", ["sample", "maps"]), ("17", ["maps"]),
                                             ("1910", ["annex"]), ("–", ["sample", "maps"]), ("images", []),
                                             ("zzz", [])])
async def test_autocomplete_filters_by_what_is_typed(env: Env, typed: str, expected: list[str]) -> None:
    """What is typed matches part of a name (ignoring case) or of the years."""
    assert [c["value"] for c in await env.choices(env.archive, typed)] == expected


async def test_autocomplete_never_offers_maps_in_lab(env: Env) -> None:
    """Typing the restricted collection's name in Lab offers nothing."""
    assert await env.choices(env.lab, "maps") == []


async def test_autocomplete_offers_nothing_where_the_bot_may_not_work(env: Env) -> None:
    """A server the bot is not allowed in gets no choices (not even the names)."""
    elsewhere = env.fake.add_guild("Elsewhere", channels=["chat"])
    env.fake.registered_commands.setdefault(elsewhere.id, {})["imagesearch"] = \
        env.fake.commands(env.lab.id)[0] | {"guild_id": str(elsewhere.id)}
    assert await env.choices(elsewhere) == []


# --- Searching ------------------------------------------------------------------------------------

async def test_default_is_the_servers_first_collection(env: Env) -> None:
    """Without `collection`, Lab searches annex (its first) and Archive sample (the first of all);
    the answer names the collection."""
    lab = await results(await env.search(prompt="a ship", k=3))
    assert len(hit_files(lab, env.names["annex"])) == 3 and "annex" in lab.embeds[0]["footer"]["text"]
    archive = await results(await env.search(env.archive, prompt="a ship", k=3))
    assert len(hit_files(archive, env.names["sample"])) == 3 and "sample" in archive.embeds[0]["footer"]["text"]


async def test_a_named_collection_is_searched_with_its_own_model(env: Env) -> None:
    """Archive searches maps by name (any case): a maps image attached ranks itself first, which
    only maps' own model can do; a prompt is answered from maps too."""
    target = min(env.folders["maps"].parent.joinpath("maps-src").rglob("*.jpg"))
    inter = await env.search(env.archive, collection="Maps", k=3,
                             attachments={"image": (target.read_bytes(), "q.jpg", "image/jpeg")})
    msg = await results(inter)
    assert hit_files(msg, env.names["maps"])[0] == target.name
    text = await results(await env.search(env.archive, collection="maps", prompt="a ship", k=4))
    assert len(hit_files(text, env.names["maps"])) == 4


async def test_paging_stays_in_the_collection(env: Env) -> None:
    """Next on a maps result shows maps' next page."""
    user = env.user()
    inter = await env.fake.slash_command("imagesearch", options={"prompt": "a ship", "k": 5, "collection": "maps"},
                                         user=user, guild=env.archive, channel="stacks")
    msg = await results(inter)
    first = hit_files(msg, env.names["maps"])
    next_id = next(cid for cid in msg.custom_ids if cid.endswith(":next"))
    press = await env.fake.press_button(msg, next_id, user=user)
    await press.wait_response()
    page = await press.wait_followup(30)
    second = hit_files(page, env.names["maps"])
    assert len(second) == 5 and not set(first) & set(second)


@pytest.mark.parametrize("name", ["maps", "MAPS", "charts"])
async def test_a_collection_the_server_may_not_use_is_refused_like_an_unknown_one(env: Env, name: str) -> None:
    """A crafted interaction naming maps in Lab is refused privately, before any work, with the same
    words as a name that does not exist: the restricted collection is not confirmed to exist."""
    inter = await env.search(prompt="a ship", collection=name)
    response = await inter.wait_response()
    assert response.type == 4 and response.ephemeral and response.message.content == UNKNOWN_COLLECTION
    assert "maps" not in response.message.content


async def test_takedowns_apply_in_each_collection(env: Env) -> None:
    """The hidden maps image never comes back from maps, even searched for with itself."""
    target = next(p for p in env.folders["maps"].parent.joinpath("maps-src").rglob("*.jpg") if p.name == env.hidden)
    inter = await env.search(env.archive, collection="maps", k=11,
                             attachments={"image": (target.read_bytes(), "q.jpg", "image/jpeg")})
    msg = await results(inter)
    files = hit_files(msg, env.names["maps"])
    assert len(files) == 11 and env.hidden not in files


@pytest.mark.parametrize("collection", ["sample", "maps"])
async def test_concepts_are_refused_in_every_collection(env: Env, collection: str) -> None:
    """The blocked concept, asked of either model's collection, is refused privately."""
    inter = await env.search(env.archive, collection=collection, prompt=CONCEPT)
    assert "not allowed" in await private_reply(inter)


async def test_audit_lines_name_the_collection(env: Env) -> None:
    """Every search decision in the audit log names the collection it was about; a refused name
    is logged as such, without the collection it did not get."""
    await results(await env.search(env.archive, collection="maps", prompt="an engraving", k=2))
    await (await env.search(prompt="a ship", collection="maps")).wait_response()
    lines = [e for e in await env.audit_lines() if e["event"] == "search"]
    allowed = [e for e in lines if e["allowed"]]
    assert allowed and all(e["collection"] in ("sample", "maps", "annex") for e in allowed)
    assert any(e["collection"] == "maps" for e in allowed)
    refused = [e for e in lines if e["reason"] == "unknown_collection"]
    assert refused and all("collection" not in e for e in refused)
    concept = [e for e in lines if str(e["reason"]).startswith("concept:")]
    assert {e["collection"] for e in concept} == {"sample", "maps"}


async def test_library_loads_models_once(folders: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """Three collections of two models: Encoder.load runs twice."""
    from search_core import encoder as encoder_module

    loads = []
    real = encoder_module.Encoder.load.__func__

    def counting(cls, name, *args, **kwargs):
        loads.append(name)
        return real(cls, name, *args, **kwargs)

    monkeypatch.setattr(encoder_module.Encoder, "load", classmethod(counting))
    settings = Settings.from_env({"DISCORD_TOKEN": "x", "IMAGESEARCH_DEVICE": "cpu", "IMAGESEARCH_COLLECTIONS":
                                  ",".join(f"{name}={path}" for name, path in folders.items())})
    library = await asyncio.to_thread(open_library, settings)
    assert len(library) == 3 and len(loads) == 2 and len(set(loads)) == 2
