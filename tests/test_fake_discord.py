"""The fake Discord against the real discord.py client: a minimal bot defined here (not the
project's bot) logs in, syncs, answers interactions, survives failures and gateway drops.

If these pass, an end-to-end test of the real bot can trust what the fake records.
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import discord
import pytest
from discord import app_commands
from discord.ext import commands

from tests.fake_discord import (
    ATTACH_FILES,
    EMBED_LINKS,
    FakeDiscord,
    FakeGuild,
    FakeUser,
    permissions_without,
)
from tests.fake_discord.models import snowflake

pytestmark = pytest.mark.timeout(30)

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


class Pager(discord.ui.View):
    """One button; records who pressed it and edits the message, as a result pager would."""

    def __init__(self) -> None:
        super().__init__(timeout=60)
        self.pressed_by: list[int] = []

    @discord.ui.button(label="Next", custom_id="test:pager:next")
    async def next_page(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
        self.pressed_by.append(interaction.user.id)
        await interaction.response.edit_message(content="page 2")


class Menu(discord.ui.View):
    """A string select and a disabled button, as a finished pager would show."""

    def __init__(self) -> None:
        super().__init__(timeout=60)
        self.chosen: list[list[str]] = []

    @discord.ui.select(custom_id="test:menu:pick", options=[discord.SelectOption(label=v, value=v)
                                                             for v in ("ship", "tree")])
    async def pick(self, interaction: discord.Interaction, select: discord.ui.Select) -> None:
        self.chosen.append(select.values)
        await interaction.response.defer()

    @discord.ui.button(label="Done", custom_id="test:menu:done", disabled=True)
    async def done(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
        await interaction.response.send_message("still pressed", ephemeral=True)


@app_commands.command()
async def menu(interaction: discord.Interaction) -> None:
    """Answer with a select menu and a disabled button."""
    view = Menu()
    interaction.client.views.append(view)  # type: ignore[attr-defined]
    await interaction.response.send_message("pick one", view=view)


@app_commands.command()
async def echo(interaction: discord.Interaction, prompt: str, k: int = 3,
               image: discord.Attachment | None = None) -> None:
    """Defer, then answer with the attached bytes as a file and a pager button."""
    await interaction.response.defer(thinking=True)
    data = await image.read() if image else b""
    view = Pager()
    interaction.client.views.append(view)  # type: ignore[attr-defined]
    await interaction.followup.send(f"{prompt} k={k}", file=discord.File(io.BytesIO(data), "echo.png"), view=view)


@app_commands.command()
async def whisper(interaction: discord.Interaction) -> None:
    """Defer publicly, then try an ephemeral followup (Discord keeps the defer's visibility)."""
    await interaction.response.defer()
    await interaction.followup.send("secret", ephemeral=True)


@app_commands.command()
async def card(interaction: discord.Interaction) -> None:
    """Answer at once, privately, with a file (a multipart callback)."""
    await interaction.response.send_message("card", file=discord.File(io.BytesIO(PNG), "card.png"), ephemeral=True)


@app_commands.command()
async def slow(interaction: discord.Interaction) -> None:
    """Answer after a pause longer than the test's callback deadline."""
    await asyncio.sleep(0.4)
    await interaction.response.send_message("late")


@app_commands.command()
async def where(interaction: discord.Interaction) -> None:
    """Report where the interaction came from and what the bot may do there."""
    channel = interaction.channel
    interaction.client.places.append(channel)  # type: ignore[attr-defined]
    perms = interaction.app_permissions
    await interaction.response.send_message(
        f"{type(channel).__name__} {getattr(channel, 'type', None)} parent={getattr(channel, 'parent_id', None)} "
        f"attach={perms.attach_files} embed={perms.embed_links}")


@app_commands.command()
async def embed(interaction: discord.Interaction) -> None:
    """Answer with an embed."""
    await interaction.response.send_message(embed=discord.Embed(title="t"))


class MiniBot(commands.Bot):
    def __init__(self, guild_id: int) -> None:
        super().__init__(command_prefix="!", intents=discord.Intents.default(), guild_ready_timeout=0.05)
        self.guild_id = guild_id
        self.views: list[discord.ui.View] = []
        self.errors: list[BaseException] = []
        self.joined: list[int] = []
        self.removed: list[int] = []
        self.places: list[object] = []
        self.tree.on_error = self._record_error  # type: ignore[method-assign]

    async def setup_hook(self) -> None:
        guild = discord.Object(self.guild_id)
        for command in (echo, whisper, card, menu, slow, where, embed):
            self.tree.add_command(command, guild=guild)
        await self.tree.sync(guild=guild)

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        """No 5 s pause before a re-IDENTIFY (discord.py's default, for Discord's identify limit)."""

    async def _record_error(self, interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
        self.errors.append(getattr(error, "original", error))

    async def on_guild_join(self, guild: discord.Guild) -> None:
        self.joined.append(guild.id)

    async def on_guild_remove(self, guild: discord.Guild) -> None:
        self.removed.append(guild.id)


@dataclass
class World:
    fake: FakeDiscord
    bot: MiniBot
    guild: FakeGuild
    alice: FakeUser


@pytest.fixture
async def world() -> AsyncIterator[World]:
    async with FakeDiscord(heartbeat_interval=0.2) as fake:
        fake.install()
        guild = fake.add_guild("Lab", channels=["research", "general"], roles=["researcher"])
        alice = fake.add_user("alice")
        bot = MiniBot(guild.id)
        task = asyncio.create_task(bot.start(fake.token))
        try:
            await fake.wait_ready()
            await asyncio.wait_for(bot.wait_until_ready(), 10)
            yield World(fake, bot, guild, alice)
        finally:
            await bot.close()
            await asyncio.wait_for(task, 10)


async def echo_roundtrip(w: World, prompt: str = "a ship") -> discord.Message | object:
    inter = await w.fake.slash_command("echo", {"prompt": prompt}, user=w.alice, guild=w.guild)
    return await inter.wait_followup(timeout=10)


async def until(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


def test_snowflakes_encode_the_current_time() -> None:
    """discord.py derives created_at and interaction expiry from ids, so they must be 'now'."""
    created = discord.utils.snowflake_time(snowflake())
    assert abs((discord.utils.utcnow() - created).total_seconds()) < 2


async def test_bot_logs_in_and_sees_guild_channels(world: World) -> None:
    """IDENTIFY gets READY and GUILD_CREATE: the bot knows its user, the guild and its channels."""
    guild = world.bot.get_guild(world.guild.id)
    assert world.bot.user is not None and world.bot.user.id == world.fake.bot_user.id
    assert guild is not None and {c.name for c in guild.text_channels} == {"research", "general"}
    assert world.fake.identifies[0]["intents"] == discord.Intents.default().value
    assert world.fake.gateway_connections[0][1]["v"] == "10"


async def test_heartbeats_are_acknowledged(world: World) -> None:
    """The client heartbeats at the HELLO interval and the fake acknowledges each one."""
    before = len(world.fake.heartbeat_acks)
    await until(lambda: len(world.fake.heartbeat_acks) >= before + 2, timeout=3)
    assert world.bot.latency < 1.0


async def test_guild_command_sync_is_recorded(world: World) -> None:
    """Commands synced to a guild show in fake.commands(guild_id) with their option types, not globally."""
    commands_ = {c["name"]: c for c in world.fake.commands(world.guild.id)}
    assert set(commands_) == {"echo", "whisper", "card", "menu", "slow", "where", "embed"}
    assert {o["name"]: o["type"] for o in commands_["echo"]["options"]} == {"prompt": 3, "k": 4, "image": 11}
    assert world.fake.commands() == []


async def test_deferred_followup_carries_file_and_button(world: World) -> None:
    """A deferred interaction's followup arrives with the attachment's bytes, the options and a button."""
    inter = await world.fake.slash_command("echo", {"prompt": "a ship", "k": 4}, user=world.alice, guild=world.guild,
                                           channel="research", attachments={"image": (PNG, "in.png", "image/png")})
    response = await inter.wait_response(timeout=3)
    message = await inter.wait_followup(timeout=10)
    assert response.type == 5 and not response.ephemeral
    assert message.content == "a ship k=4"
    assert [(a.filename, a.data) for a in message.attachments] == [("echo.png", PNG)]
    assert message.custom_ids == ["test:pager:next"]
    assert message.channel_id == world.guild.channels["research"]


async def test_button_press_reaches_the_view(world: World) -> None:
    """Pressing the followup's button runs the bot's View callback, which updates the message."""
    message = await echo_roundtrip(world)
    press = await world.fake.press_button(message, "test:pager:next", user=world.alice)
    response = await press.wait_response(timeout=3)
    edited = await press.wait_followup(timeout=3)
    assert response.type == 7
    assert world.bot.views[0].pressed_by == [world.alice.id]
    assert edited.id == message.id and edited.content == "page 2"


async def test_select_choice_reaches_the_view(world: World) -> None:
    """choose_option dispatches a string-select interaction whose values reach the View's callback."""
    inter = await world.fake.slash_command("menu", user=world.alice, guild=world.guild)
    message = await inter.wait_followup(timeout=3)
    choice = await world.fake.choose_option(message, "test:menu:pick", "tree", user=world.alice)
    response = await choice.wait_response(timeout=3)
    assert response.type == 6
    assert world.bot.views[0].chosen == [["tree"]]  # type: ignore[attr-defined]


async def test_disabled_button_is_pressed_only_as_a_stale_press(world: World) -> None:
    """A disabled button cannot be pressed, except explicitly as a stale client's press."""
    inter = await world.fake.slash_command("menu", user=world.alice, guild=world.guild)
    message = await inter.wait_followup(timeout=3)
    with pytest.raises(ValueError, match="disabled"):
        await world.fake.press_button(message, "test:menu:done", user=world.alice)
    stale = await world.fake.press_button(message, "test:menu:done", user=world.alice, allow_disabled=True)
    reply = await stale.wait_followup(timeout=3)
    assert reply.content == "still pressed" and reply.ephemeral


async def test_rate_limited_followup_is_retried(world: World) -> None:
    """A 429 with Discord's headers makes discord.py wait retry_after and send again."""
    world.fake.fail_next("POST", r"^/webhooks/", status=429, retry_after=0.1)
    message = await echo_roundtrip(world, "after 429")
    statuses = [r.status for r in world.fake.requests if r.method == "POST" and r.path.startswith("/webhooks/")]
    assert message.content == "after 429 k=3"
    assert statuses == [429, 200]


async def test_server_error_on_followup_is_retried(world: World) -> None:
    """A 500 on the followup is retried by discord.py and the message still arrives."""
    world.fake.fail_next("POST", r"^/webhooks/", status=500)
    message = await echo_roundtrip(world, "after 500")
    statuses = [r.status for r in world.fake.requests if r.method == "POST" and r.path.startswith("/webhooks/")]
    assert message.content == "after 500 k=3"
    assert statuses == [500, 200]


async def test_bot_resumes_after_gateway_drop(world: World) -> None:
    """After a dropped websocket the client RESUMEs on resume_gateway_url and still answers."""
    await world.fake.drop_gateway(resumable=True)
    message = await echo_roundtrip(world, "resumed")
    assert world.fake.resumes == 1 and len(world.fake.identifies) == 1
    assert world.fake.gateway_connections[-1][0] == "/gateway/resume"
    assert message.content == "resumed k=3"


async def test_events_sent_while_disconnected_are_replayed(world: World) -> None:
    """An interaction dispatched while the socket is down reaches the bot through RESUME's replay."""
    await world.fake.drop_gateway(resumable=True, wait=False)
    inter = await world.fake.slash_command("echo", {"prompt": "replayed"}, user=world.alice, guild=world.guild)
    message = await inter.wait_followup(timeout=10)
    assert message.content == "replayed k=3"
    assert world.fake.replayed_events == ["INTERACTION_CREATE"]


async def test_invalid_session_makes_the_bot_identify_again(world: World) -> None:
    """A non-resumable drop (INVALID_SESSION) leads to a fresh IDENTIFY and READY."""
    await world.fake.drop_gateway(resumable=False)
    message = await echo_roundtrip(world, "fresh")
    assert len(world.fake.identifies) == 2 and world.fake.resumes == 0
    assert message.content == "fresh k=3"


async def test_leaving_a_guild_is_recorded(world: World) -> None:
    """Guild.leave() is recorded in left_guilds and GUILD_DELETE removes it from the bot's cache."""
    await world.bot.get_guild(world.guild.id).leave()  # type: ignore[union-attr]
    await until(lambda: world.bot.removed == [world.guild.id])
    assert world.fake.left_guilds == [world.guild.id]
    assert world.bot.get_guild(world.guild.id) is None


async def test_guild_added_later_fires_guild_join(world: World) -> None:
    """add_guild_later dispatches GUILD_CREATE for a new guild: the bot's on_guild_join runs."""
    new = await world.fake.add_guild_later("Invited", channels=["lobby"])
    await until(lambda: world.bot.joined == [new.id])
    assert world.bot.get_guild(new.id).text_channels[0].name == "lobby"  # type: ignore[union-attr]


@pytest.mark.parametrize(("private", "listed"), [(False, True), (True, True), (True, False)])
async def test_threads_reach_the_client(world: World, private: bool, listed: bool) -> None:
    """A listed thread is in the bot's cache (THREAD_CREATE); an unlisted one is known only from the
    interaction's channel. Either way interaction.channel is a Thread of the right kind and parent."""
    thread = await world.fake.add_thread(world.guild, "t", "research", private=private, listed=listed)
    guild = world.bot.get_guild(world.guild.id)
    if listed:
        await until(lambda: guild.get_thread(thread.id) is not None)  # type: ignore[union-attr]
    else:
        assert guild.get_thread(thread.id) is None  # type: ignore[union-attr]
    inter = await world.fake.slash_command("where", user=world.alice, guild=world.guild, channel="t")
    reply = await inter.wait_followup(timeout=3)
    kind = "private_thread" if private else "public_thread"
    assert reply.content.startswith(f"Thread {kind} parent={world.guild.channels['research']}")
    assert reply.channel_id == thread.id and world.bot.places[-1].id == thread.id  # type: ignore[attr-defined]


async def test_threads_listed_before_start_come_with_guild_create() -> None:
    """Threads that exist when the bot connects come in GUILD_CREATE's `threads`: listed ones only."""
    async with FakeDiscord() as fake:
        fake.install()
        guild = fake.add_guild("Lab", channels=["research", "general"])
        listed = await fake.add_thread(guild, "open", "research")
        await fake.add_thread(guild, "hidden", "general", private=True, listed=False)
        bot = commands.Bot(command_prefix="!", intents=discord.Intents.default(), guild_ready_timeout=0.05)
        task = asyncio.create_task(bot.start(fake.token))
        try:
            await asyncio.wait_for(bot.wait_until_ready(), 10)
            threads = bot.get_guild(guild.id).threads  # type: ignore[union-attr]
            assert [(t.id, t.parent_id, t.type) for t in threads] == [
                (listed.id, guild.channels["research"], discord.ChannelType.public_thread)]
        finally:
            await bot.close()
            await asyncio.wait_for(task, 10)


async def test_app_permissions_reach_the_client_and_are_enforced(world: World) -> None:
    """set_app_permissions shapes app_permissions per channel (threads inherit it); a file or an
    embed the permissions forbid is refused with 403 code 50013 and shows nothing."""
    world.fake.set_app_permissions(world.guild, permissions_without(ATTACH_FILES, EMBED_LINKS), channel="general")
    await world.fake.add_thread(world.guild, "under-general", "general")
    for channel, allowed in (("research", True), ("general", False), ("under-general", False)):
        inter = await world.fake.slash_command("where", user=world.alice, guild=world.guild, channel=channel)
        reply = await inter.wait_followup(timeout=3)
        assert reply.content.endswith(f"attach={allowed} embed={allowed}")
    inter = await world.fake.slash_command("echo", {"prompt": "x"}, user=world.alice, guild=world.guild,
                                           channel="general", attachments={"image": (PNG, "in.png", "image/png")})
    await until(lambda: world.bot.errors, timeout=5)
    inter2 = await world.fake.slash_command("embed", user=world.alice, guild=world.guild, channel="general")
    await until(lambda: len(world.bot.errors) == 2, timeout=5)
    assert all(isinstance(e, discord.Forbidden) and e.code == 50013 for e in world.bot.errors)
    assert inter.messages == [] and inter2.messages == []


async def test_guild_list_and_fixed_guild_ids(world: World) -> None:
    """GET /users/@me/guilds lists the bot's guilds (fetch_guilds); a guild can be given its id."""
    fixed = snowflake()
    await world.fake.add_guild_later("Fixed", guild_id=fixed)
    assert sorted([g.id async for g in world.bot.fetch_guilds(limit=None)]) == sorted([world.guild.id, fixed])
    assert [g.id async for g in world.bot.fetch_guilds(limit=1)] == [min(world.guild.id, fixed)]


async def test_an_injected_error_can_echo_the_request_path(world: World) -> None:
    """fail_next(message=...) with {path}: the error text holds the request's path, token included."""
    world.fake.fail_next("POST", r"^/webhooks/", status=400, message="bad request at {path}")
    inter = await world.fake.slash_command("echo", {"prompt": "x"}, user=world.alice, guild=world.guild)
    await until(lambda: world.bot.errors, timeout=5)
    assert inter.token in str(world.bot.errors[0]) and "bad request at /webhooks/" in str(world.bot.errors[0])


async def test_public_defer_keeps_ephemeral_followup_public(world: World) -> None:
    """As on Discord, the first followup after a public defer is public even when asked ephemeral."""
    inter = await world.fake.slash_command("whisper", user=world.alice, guild=world.guild)
    message = await inter.wait_followup(timeout=5)
    assert message.content == "secret" and not message.ephemeral


async def test_immediate_ephemeral_reply_with_file(world: World) -> None:
    """A type-4 callback sent as multipart is parsed: content, file bytes and the ephemeral flag."""
    inter = await world.fake.slash_command("card", user=world.alice, guild=world.guild)
    response = await inter.wait_response(timeout=3)
    message = await inter.wait_followup(timeout=3)
    assert response.type == 4 and response.ephemeral
    assert message.content == "card" and message.ephemeral
    assert [(a.filename, a.data) for a in message.attachments] == [("card.png", PNG)]


async def test_upload_over_the_interaction_limit_is_refused(world: World) -> None:
    """Files larger than the interaction's attachment_size_limit get 413 (code 40005) and no message."""
    world.fake.attachment_size_limit = len(PNG) - 1
    inter = await world.fake.slash_command("echo", {"prompt": "big"}, user=world.alice, guild=world.guild,
                                           attachments={"image": (PNG, "in.png", "image/png")})
    await until(lambda: world.bot.errors, timeout=5)
    assert isinstance(world.bot.errors[0], discord.HTTPException) and world.bot.errors[0].code == 40005
    assert inter.messages == [] and inter.response is not None and inter.response.type == 5


async def test_callback_after_deadline_is_unknown_interaction(world: World) -> None:
    """A callback later than the deadline gets 404 Unknown interaction, as Discord's 3 s rule does."""
    world.fake.callback_deadline = 0.1
    inter = await world.fake.slash_command("slow", user=world.alice, guild=world.guild)
    await until(lambda: world.bot.errors, timeout=5)
    assert isinstance(world.bot.errors[0], discord.NotFound) and world.bot.errors[0].code == 10062
    assert inter.response is None


async def test_unknown_route_is_404_and_recorded(world: World) -> None:
    """A route the fake does not implement answers 404 and is listed in unknown_requests."""
    with pytest.raises(discord.NotFound):
        await world.bot.http.request(discord.http.Route("GET", "/guilds/{guild_id}/bans", guild_id=world.guild.id))
    assert [(r.method, r.path) for r in world.fake.unknown_requests] == [("GET", f"/guilds/{world.guild.id}/bans")]


async def test_wrong_token_fails_login() -> None:
    """A token the fake does not know gets 401, which discord.py reports as LoginFailure; no IDENTIFY."""
    async with FakeDiscord() as fake:
        fake.install()
        bot = commands.Bot(command_prefix="!", intents=discord.Intents.default())
        with pytest.raises(discord.LoginFailure):
            await bot.start("not-the-token")
        await bot.close()
        assert fake.identifies == []
        assert [(r.path, r.status) for r in fake.requests] == [("/users/@me", 401)]


async def test_exit_restores_discord_endpoints() -> None:
    """Leaving the context puts discord.py's endpoints back, so no later test talks to a dead port."""
    before = (discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY)
    async with FakeDiscord() as fake:
        fake.install()
        assert discord.http.Route.BASE == fake.api_base
    assert (discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY) == before
