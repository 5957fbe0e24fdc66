"""The bot picks up a rebuilt collection (issue 9, item 4), end to end through the fake Discord.

The bot serves the folder `live`, opened by the real loader, and checks it every 0.2 s. The tests
replace that folder the way users do: `imagesearch build` into the same --out (a new folder
renamed into place, the old one deleted), a broken folder renamed into place by hand, and the
folder moved away for a while.
"""

from __future__ import annotations

import asyncio
import gc
import io
import json
import logging
import os
import shutil
import threading
import weakref
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from PIL import Image

from bot.__main__ import open_library
from bot.client import ImageBot
from bot.library import STALE_RESULTS
from bot.settings import Settings
from tests.fake_discord import FakeDiscord, FakeInteraction, FakeMessage
from tests.fake_discord.models import snowflake
from tests.fixtures.bot import hit_names, results, running_bot
from tests.fixtures.images import make_imagefolder

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(180)]

INTERVAL = 0.2


class Logs(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


class Hold:
    """Holds the bot's worker inside a service's search until released: a query in flight."""

    def __init__(self, service: Any) -> None:
        self.service = service
        self.entered, self.gate = threading.Event(), threading.Event()
        service.search_vector = self

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.entered.set()
        self.gate.wait(60)
        service, self.service = self.service, None     # the query keeps what it needs, the test nothing
        del service.search_vector                      # the class's own method again
        return service.search_vector(*args, **kwargs)

    def release(self) -> Any:
        service = self.service
        self.gate.set()
        return service


class Env:
    def __init__(self, fake: FakeDiscord, bot: ImageBot, lab: Any, live: Path, tiny_clip: Path, root: Path,
                 logs: Logs) -> None:
        self.fake, self.bot, self.lab, self.live, self.tiny_clip = fake, bot, lab, live, tiny_clip
        self.root, self.logs = root, logs
        self._users = 0

    def user(self):
        self._users += 1
        return self.fake.add_user(f"reader{self._users}")

    @property
    def edition(self):
        return self.bot.library.current("live")

    async def search(self, user: Any = None, **options: Any) -> FakeInteraction:
        return await self.fake.slash_command("imagesearch", options={"k": 3, **options}, user=user or self.user(),
                                             guild=self.lab, channel="research")

    async def rebuild(self, source: Path) -> None:
        """`imagesearch build SOURCE --out live`, in a thread so the bot keeps running."""
        from scripts.build import build_collection

        await asyncio.to_thread(build_collection, str(source), self.live, model=str(self.tiny_clip), device="cpu",
                                progress=False)

    async def until(self, condition, what: str, timeout: float = 30.0) -> None:
        for _ in range(int(timeout / 0.05)):
            if condition():
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}; log: {self.logs.lines[-5:]}")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(collection_dir: Path, tiny_clip: Path, tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("reload")
    live = root / "live"
    shutil.copytree(collection_dir, live)
    logs = Logs()
    watch_log = logging.getLogger("bot.watch")
    watch_log.addHandler(logs)
    old_level = watch_log.level
    watch_log.setLevel(logging.INFO)
    lab_id = snowflake()
    settings = Settings.from_env({"DISCORD_TOKEN": "unused", "IMAGESEARCH_COLLECTION": str(live),
                                  "IMAGESEARCH_DEVICE": "cpu", "IMAGESEARCH_ALLOWED_GUILDS": str(lab_id),
                                  "IMAGESEARCH_RATE_LIMIT": "100/60", "IMAGESEARCH_RELOAD_INTERVAL": str(INTERVAL)})
    library = open_library(settings)
    try:
        async with running_bot(settings, library, {"Lab": (lab_id, ["research"])}) as (fake, bot, guilds):
            yield Env(fake, bot, guilds["Lab"], live, tiny_clip, root, logs)
    finally:
        watch_log.removeHandler(logs)
        watch_log.setLevel(old_level)


def source_names(folder: Path) -> set[str]:
    return {p.name for p in folder.rglob("*.jpg")}


def sheet(msg: FakeMessage) -> Image.Image:
    (attachment,) = msg.attachments
    img = Image.open(io.BytesIO(attachment.data))
    img.load()
    return img


async def test_a_rebuild_is_picked_up_between_queries(env: Env, sample_images) -> None:
    """While a query is in flight, `imagesearch build` replaces the folder (deleting the old one)
    and the bot switches: the query in flight finishes on the old build, contact sheet included;
    the next search uses the new build; a pager from before answers "search again"; the switch is
    logged; and the old build is released once nothing uses it."""
    old_names = {s.path.name for s in sample_images[1]}
    new_source = env.root / "new-src"
    make_imagefolder(new_source, n=10, years=(1950,), seed=11)
    new_names = source_names(new_source)

    owner = env.user()
    before = await results(await env.search(owner, prompt="a ship"))
    assert set(hit_names(before)) <= old_names

    old_version = env.edition.version
    hold = Hold(env.edition.service)
    in_flight = await env.search(prompt="a steam engine", k=4)
    assert await asyncio.to_thread(hold.entered.wait, 30)

    await env.rebuild(new_source)
    assert not list(env.root.glob(".live.old-*")), "the build left the old folder behind"
    await env.until(lambda: env.edition.version != old_version, "the switch")
    assert any("switched from build" in line for line in env.logs.lines)

    released = weakref.ref(hold.release())
    answered = await results(in_flight)
    assert len(hit_names(answered)) == 4 and set(hit_names(answered)) <= old_names
    assert sheet(answered).width > 0

    after = await results(await env.search(prompt="a ship"))
    assert set(hit_names(after)) <= new_names

    next_id = next(cid for cid in before.custom_ids if cid.endswith(":next"))
    press = await env.fake.press_button(before, next_id, user=owner)
    response = await press.wait_response()
    assert response.type == 4 and response.ephemeral and response.message.content == STALE_RESULTS
    select = next(c for row in before.components for c in row["components"] if c.get("type") == 3)
    choice = await env.fake.choose_option(before, select["custom_id"], select["options"][0]["value"], user=owner)
    assert (await choice.wait_response()).message.content == STALE_RESULTS

    del hold
    for _ in range(20):
        gc.collect()
        if released() is None:
            break
        await asyncio.sleep(0.05)
    assert released() is None, "the old build is still held after its last query finished"


async def test_a_broken_replacement_is_ignored(env: Env) -> None:
    """A folder renamed into place with a corrupt index is ignored with one log line; the bot keeps
    serving the build it has (searches and pagers), and putting the good folder back changes nothing."""
    current = env.edition
    ignored = sum("ignoring the replacement build" in line for line in env.logs.lines)
    owner = env.user()
    before = await results(await env.search(owner, prompt="a ship"))

    broken = env.root / "broken"
    shutil.copytree(env.live, broken)
    (broken / "index.faiss").write_bytes(b"not an index")
    manifest = json.loads((broken / "manifest.json").read_text(encoding="utf-8"))
    manifest["built_at"] = "2099-01-01T00:00:00+00:00"
    manifest["build_id"] = "20990101T000000Z-broken"
    (broken / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    aside = env.root / "aside"
    os.rename(env.live, aside)
    os.rename(broken, env.live)

    await env.until(lambda: sum("ignoring the replacement build" in line for line in env.logs.lines) > ignored,
                    "the broken build to be ignored")
    await asyncio.sleep(INTERVAL * 3)
    assert sum("ignoring the replacement build" in line for line in env.logs.lines) == ignored + 1, "logged once"
    assert env.edition is current
    again = await results(await env.search(prompt="a ship"))
    assert hit_names(again) and set(hit_names(again)) <= set(current.service.collection.dataset["file_name"])

    shutil.rmtree(env.live)
    os.rename(aside, env.live)
    await asyncio.sleep(INTERVAL * 3)
    assert env.bot.library.current("live").version == current.version
    next_id = next(cid for cid in before.custom_ids if cid.endswith(":next"))
    press = await env.fake.press_button(before, next_id, user=owner)
    assert (await press.wait_response()).type == 6     # paged: not stale


async def test_a_missing_folder_keeps_the_old_build(env: Env) -> None:
    """Between a build's two renames (or while an operator moves it) the folder is missing: the bot
    keeps answering from the build it has, and notes it once in the log."""
    current = env.edition
    notes = sum("is missing" in line for line in env.logs.lines)
    moved = env.root / "moved"
    os.rename(env.live, moved)
    try:
        await env.until(lambda: sum("is missing" in line for line in env.logs.lines) > notes, "the missing note")
        assert hit_names(await results(await env.search(prompt="birds")))
        assert env.edition is current
    finally:
        os.rename(moved, env.live)
    await asyncio.sleep(INTERVAL * 3)
    assert env.edition.version == current.version
