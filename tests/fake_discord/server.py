"""FakeDiscord: the server the real discord.py client talks to, and the handle tests drive it by.

The API is documented in tests/fake_discord/README.md; keep the two in step.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time
from typing import TYPE_CHECKING, Any

import discord
import discord.asset
import discord.gateway
import discord.http
import yarl
from aiohttp import web

from tests.fake_discord.gateway import Gateway
from tests.fake_discord.models import (
    ALL_PERMISSIONS,
    COMPONENT_BUTTON,
    COMPONENT_STRING_SELECT,
    FakeAttachment,
    FakeGuild,
    FakeInteraction,
    FakeMessage,
    FakeThread,
    FakeUser,
    RecordedRequest,
    snowflake,
)
from tests.fake_discord.rest import API_PREFIX, Failure, Rest, serve_attachment

if TYPE_CHECKING:
    from typing_extensions import Self

log = logging.getLogger(__name__)

OPTION_SUB_COMMAND, OPTION_SUB_COMMAND_GROUP, OPTION_USER, OPTION_ATTACHMENT = 1, 2, 6, 11


def point_discord_at(api_base: str, gateway_url: str, cdn_base: str) -> tuple[Any, ...]:
    """Set discord.py's module-level endpoints; returns the previous ones."""
    saved = (discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY, discord.asset.Asset.BASE)
    discord.http.Route.BASE = api_base
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)
    discord.asset.Asset.BASE = cdn_base
    return saved


class FakeDiscord:
    """A Discord API v10 + gateway on 127.0.0.1 for one bot; see README.md for the test API."""

    def __init__(self, *, heartbeat_interval: float = 1.0, callback_deadline: float = 3.0,
                 attachment_size_limit: int = 10 * 1024 * 1024, token_lifetime: float = 15 * 60) -> None:
        self.heartbeat_interval = heartbeat_interval
        self.callback_deadline = callback_deadline
        self.attachment_size_limit = attachment_size_limit
        self.token_lifetime = token_lifetime
        self.token = "fake." + secrets.token_urlsafe(24)
        self.bot_user = FakeUser(snowflake(), "imagesearch-test-bot", bot=True)
        self.application_id = self.bot_user.id     # as for every application made since 2020
        self.owner = FakeUser(snowflake(), "owner")
        self.users: dict[int, FakeUser] = {}
        self.guilds: dict[int, FakeGuild] = {}
        self.registered_commands: dict[int | None, dict[str, dict[str, Any]]] = {}
        self.interactions: dict[int, FakeInteraction] = {}
        self.interactions_by_token: dict[str, FakeInteraction] = {}
        self.attachments: dict[int, FakeAttachment] = {}
        self.sent_channel_messages: dict[int, list[FakeMessage]] = {}
        # Records for tests.
        self.requests: list[RecordedRequest] = []
        self.unknown_requests: list[RecordedRequest] = []
        self.heartbeat_acks: list[float] = []
        self.identifies: list[dict[str, Any]] = []
        self.presence_updates: list[Any] = []
        self.gateway_connections: list[tuple[str, dict[str, str]]] = []
        self.left_guilds: list[int] = []
        self.cdn_requests: list[str] = []           # paths of CDN downloads, e.g. attachment reads
        self.resumes = 0
        self.replayed_events: list[str] = []      # names of events replayed on RESUME
        self.gateway = Gateway(self)
        self.rest = Rest(self)
        self._runner: web.AppRunner | None = None
        self._saved: tuple[Any, ...] | None = None
        self.port = 0

    # -- lifecycle -----------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)   # aiohttp's 1 MiB default < uploads
        app.router.add_get("/gateway", self.gateway.handle)
        app.router.add_get("/gateway/resume", self.gateway.handle)
        app.router.add_get("/cdn/attachments/{channel}/{id}/{filename}",
                           lambda request: serve_attachment(self, request))
        app.router.add_route("*", API_PREFIX + "/{tail:.*}", self.rest.handle)
        app.router.add_route("*", "/{tail:.*}", self._unknown)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        log.info("fake discord listening on %s", self.base)

    async def stop(self) -> None:
        self.uninstall()
        if self._runner is not None:
            await self.gateway.close_all()
            await self._runner.cleanup()
            self._runner = None

    async def _unknown(self, request: web.Request) -> web.Response:
        log.error("fake discord: UNKNOWN URL %s %s (answered 404)", request.method, request.path)
        self.unknown_requests.append(RecordedRequest(request.method, request.path, dict(request.query), None, []))
        return web.Response(status=404, text="404: Not Found")

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_base(self) -> str:
        return self.base + API_PREFIX

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway"

    @property
    def resume_gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway/resume"

    @property
    def cdn_base(self) -> str:
        return self.base + "/cdn"

    def install(self) -> None:
        """Point discord.py's module-level endpoints at the fake (undone by uninstall/exit)."""
        saved = point_discord_at(self.api_base, self.gateway_url, self.cdn_base)
        if self._saved is None:
            self._saved = saved

    def bot_process_args(self) -> list[str]:
        """Arguments for `python -m tests.fake_discord.run_bot`: the real entry point, in a process of
        its own, talking to this fake."""
        return [self.api_base, self.gateway_url, self.cdn_base]

    def uninstall(self) -> None:
        if self._saved is not None:
            (discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY,
             discord.asset.Asset.BASE) = self._saved
            self._saved = None

    # -- world ---------------------------------------------------------------------------------

    def add_user(self, name: str) -> FakeUser:
        user = FakeUser(snowflake(), name)
        self.users[user.id] = user
        return user

    def add_guild(self, name: str, channels: list[str] | tuple[str, ...] = ("general",),
                  roles: list[str] | tuple[str, ...] = (), *, guild_id: int | None = None) -> FakeGuild:
        """A guild the bot is in. `guild_id`: a fixed id (e.g. one allowlisted before the bot joins)."""
        if not channels:
            raise ValueError("a guild needs at least one channel")
        guild_id = guild_id or snowflake()
        guild = FakeGuild(id=guild_id, name=name, channels={c: snowflake() for c in channels},
                          roles={"@everyone": guild_id, **{r: snowflake() for r in roles}},
                          owner_id=self.owner.id)
        self.guilds[guild.id] = guild
        return guild

    async def add_guild_later(self, name: str, channels: list[str] | tuple[str, ...] = ("general",),
                              roles: list[str] | tuple[str, ...] = (), *, guild_id: int | None = None) -> FakeGuild:
        guild = self.add_guild(name, channels, roles, guild_id=guild_id)
        await self.gateway.dispatch("GUILD_CREATE", guild.to_json(self.bot_user, unavailable=None))
        return guild

    async def add_thread(self, guild: FakeGuild, name: str, parent: str, *, private: bool = False,
                         listed: bool = True) -> FakeThread:
        """A thread in the text channel `parent` (public, or private: type 12). `listed=False`: the
        bot learns of it only from an interaction's `channel` (a private thread it was never added
        to). Once the bot is connected, a listed thread is announced with THREAD_CREATE."""
        if name in guild.threads or name in guild.channels:
            raise ValueError(f"guild {guild.name!r} already has a channel or thread {name!r}")
        thread = FakeThread(snowflake(), name, guild.channel_id(parent), self.owner.id, private=private,
                            listed=listed)
        guild.threads[name] = thread
        if listed and self.gateway.session is not None:
            await self.gateway.dispatch("THREAD_CREATE", {**thread.to_json(guild.id), "newly_created": True})
        return thread

    def set_app_permissions(self, guild: FakeGuild, permissions: int, channel: str | int | None = None) -> None:
        """The bot's permissions sent with interactions from `guild` (or from one channel or thread of
        it); e.g. permissions_without(ATTACH_FILES). Messages with files or embeds that they forbid
        are refused with 403 (see README)."""
        guild.app_permissions[None if channel is None else guild.channel_id(channel)] = int(permissions)

    async def wait_ready(self, timeout: float = 10.0) -> None:
        await asyncio.wait_for(self.gateway.ready.wait(), timeout)

    def commands(self, guild_id: int | None = None) -> list[dict[str, Any]]:
        return list(self.registered_commands.get(guild_id, {}).values())

    def channel_messages(self, channel_id: int) -> list[FakeMessage]:
        return list(self.sent_channel_messages.get(channel_id, []))

    def fail_next(self, method: str, path_regex: str, status: int = 429, times: int = 1,
                  retry_after: float = 0.2, global_: bool = False, message: str | None = None) -> None:
        """`message`: the JSON error message of a non-429 failure; `{path}` in it becomes the request's
        path (as an error text that echoes its URL would: the bot must not log the token in it)."""
        self.rest.failures.append(Failure(method.upper(), re.compile(path_regex), status, times,
                                          retry_after, global_, message))

    async def drop_gateway(self, resumable: bool = True, timeout: float = 10.0, wait: bool = True) -> None:
        """Drop the websocket and return once the client is back (RESUMED, or a new READY).

        With wait=False it returns at once: events dispatched before the client is back are
        kept and replayed on RESUME."""
        resumes, identifies = self.resumes, len(self.identifies)
        await self.gateway.drop(resumable=resumable)
        if not wait:
            return
        deadline = time.monotonic() + timeout
        while (self.resumes == resumes) if resumable else (len(self.identifies) == identifies):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the client did not {'resume' if resumable else 'identify'} "
                                   f"within {timeout} s")
            await asyncio.sleep(0.02)

    # -- interactions --------------------------------------------------------------------------

    def _find_command(self, name: str, guild: FakeGuild | None) -> dict[str, Any]:
        scopes = ([guild.id] if guild else []) + [None]
        for scope in scopes:
            command = self.registered_commands.get(scope, {}).get(name)
            if command is not None:
                return command
        known = {scope: sorted(cmds) for scope, cmds in self.registered_commands.items()}
        raise ValueError(f"command {name!r} is not registered for this guild or globally; registered: {known}")

    def _options(self, spec: list[dict[str, Any]], given: dict[str, Any], resolved: dict[str, Any],
                 channel_id: int, guild: FakeGuild | None,
                 attachments: dict[str, tuple[bytes, str, str]]) -> list[dict[str, Any]]:
        by_name = {o["name"]: o for o in spec}
        options = []
        for name in [*given, *(a for a in attachments if a not in given)]:
            if name not in by_name:
                raise ValueError(f"option {name!r} is not in the command's options {sorted(by_name)}")
            kind = by_name[name]["type"]
            if kind == OPTION_ATTACHMENT:
                data, filename, content_type = attachments[name]
                attachment = FakeAttachment(snowflake(), filename, content_type, data)
                self.attachments[attachment.id] = attachment
                resolved.setdefault("attachments", {})[str(attachment.id)] = attachment.to_json(self.cdn_base,
                                                                                               channel_id)
                value: Any = str(attachment.id)
            elif kind == OPTION_USER:
                user = given[name]
                resolved.setdefault("users", {})[str(user.id)] = user.to_json()
                if guild is not None:
                    member = guild.member_json(user)
                    member.pop("user")
                    resolved.setdefault("members", {})[str(user.id)] = member
                value = str(user.id)
            elif kind in (OPTION_SUB_COMMAND, OPTION_SUB_COMMAND_GROUP):
                raise ValueError("name subcommands in the command name: slash_command('group sub', ...)")
            else:
                value = given[name]
            options.append({"name": name, "type": kind, "value": value})
        return options

    async def slash_command(self, name: str, options: dict[str, Any] | None = None, *, user: FakeUser,
                            guild: FakeGuild | None = None, channel: str | int | None = None,
                            attachments: dict[str, tuple[bytes, str, str]] | None = None,
                            roles: list[str] | tuple[str, ...] = (), locale: str = "en-US") -> FakeInteraction:
        """Dispatch INTERACTION_CREATE (application command) as if `user` typed /name."""
        top, *path = name.split()
        command = self._find_command(top, guild)
        channel_id = guild.channel_id(channel) if guild else snowflake()
        resolved: dict[str, Any] = {}
        spec, nest = command.get("options") or [], []
        for sub in path:
            found = next((o for o in spec if o["name"] == sub
                          and o["type"] in (OPTION_SUB_COMMAND, OPTION_SUB_COMMAND_GROUP)), None)
            if found is None:
                raise ValueError(f"{top!r} has no subcommand {sub!r}")
            nest.append(found)
            spec = found.get("options") or []
        opts = self._options(spec, dict(options or {}), resolved, channel_id, guild, dict(attachments or {}))
        for sub in reversed(nest):
            opts = [{"name": sub["name"], "type": sub["type"], "options": opts}]
        data: dict[str, Any] = {"id": command["id"], "name": top, "type": command.get("type", 1), "options": opts}
        if resolved:
            data["resolved"] = resolved
        if "guild_id" in command:
            data["guild_id"] = command["guild_id"]
        return await self._dispatch_interaction(2, data, user, guild, channel_id, roles, locale)

    async def autocomplete(self, name: str, focused: str, options: dict[str, Any] | None = None, *,
                           user: FakeUser, guild: FakeGuild | None = None, channel: str | int | None = None,
                           roles: list[str] | tuple[str, ...] = (), locale: str = "en-US") -> FakeInteraction:
        """Dispatch INTERACTION_CREATE type 4 (autocomplete) as if `user` were typing the option
        `focused` of /name; `options` holds what is typed so far (the focused one included, as a
        string). The bot answers with callback type 8: `(await inter.wait_response()).data["choices"]`."""
        command = self._find_command(name, guild)
        given = {focused: "", **dict(options or {})}
        spec = {o["name"]: o for o in command.get("options") or []}
        if not spec.get(focused, {}).get("autocomplete"):
            raise ValueError(f"option {focused!r} of {name!r} is not registered with autocomplete")
        channel_id = guild.channel_id(channel) if guild else snowflake()
        opts = self._options(command.get("options") or [], given, {}, channel_id, guild, {})
        for option in opts:
            if option["name"] == focused:
                option["focused"] = True
                option["value"] = str(option["value"])
        data: dict[str, Any] = {"id": command["id"], "name": name, "type": command.get("type", 1), "options": opts}
        if "guild_id" in command:
            data["guild_id"] = command["guild_id"]
        return await self._dispatch_interaction(4, data, user, guild, channel_id, roles, locale)

    async def press_button(self, message: FakeMessage, custom_id: str, *, user: FakeUser,
                           roles: list[str] | tuple[str, ...] = (), locale: str = "en-US",
                           allow_disabled: bool = False) -> FakeInteraction:
        """Dispatch INTERACTION_CREATE (message component) for a button on `message`.

        `allow_disabled=True` models a client still showing an older copy of the message, where
        the button was not yet disabled (a stale press the bot must handle)."""
        live, button = self._component(message, custom_id, allow_disabled)
        if button.get("type") != COMPONENT_BUTTON:
            raise ValueError(f"component {custom_id!r} is not a button (type {button.get('type')})")
        guild = self.guilds.get(live.guild_id) if live.guild_id else None
        data = {"custom_id": custom_id, "component_type": COMPONENT_BUTTON}
        return await self._dispatch_interaction(3, data, user, guild, live.channel_id, roles, locale,
                                                message=live)

    async def choose_option(self, message: FakeMessage, custom_id: str, values: str | list[str], *,
                            user: FakeUser, roles: list[str] | tuple[str, ...] = (), locale: str = "en-US",
                            allow_disabled: bool = False) -> FakeInteraction:
        """Dispatch INTERACTION_CREATE (message component) choosing `values` in a string select."""
        live, select = self._component(message, custom_id, allow_disabled)
        if select.get("type") != COMPONENT_STRING_SELECT:
            raise ValueError(f"component {custom_id!r} is not a string select (type {select.get('type')})")
        chosen = [values] if isinstance(values, str) else list(values)
        offered = [o["value"] for o in select.get("options", [])]
        if any(v not in offered for v in chosen):
            raise ValueError(f"select {custom_id!r} offers {offered}, not {chosen}")
        if not select.get("min_values", 1) <= len(chosen) <= select.get("max_values", 1):
            raise ValueError(f"select {custom_id!r} takes {select.get('min_values', 1)}-"
                             f"{select.get('max_values', 1)} values, not {len(chosen)}")
        guild = self.guilds.get(live.guild_id) if live.guild_id else None
        data = {"custom_id": custom_id, "component_type": COMPONENT_STRING_SELECT, "values": chosen}
        return await self._dispatch_interaction(3, data, user, guild, live.channel_id, roles, locale,
                                                message=live)

    def _component(self, message: FakeMessage, custom_id: str,
                   allow_disabled: bool) -> tuple[FakeMessage, dict[str, Any]]:
        live = self.live_message(message)
        if live.deleted:
            raise ValueError(f"message {live.id} was deleted")
        found = next((c for row in live.components for c in row.get("components", [])
                      if c.get("custom_id") == custom_id), None)
        if found is None:
            ids = [c.get("custom_id") for row in live.components for c in row.get("components", [])]
            raise ValueError(f"message {live.id} has no component {custom_id!r}; it has {ids}")
        if found.get("disabled") and not allow_disabled:
            raise ValueError(f"component {custom_id!r} is disabled")
        return live, found

    def live_message(self, message: FakeMessage) -> FakeMessage:
        """The current state of a message (tests hold snapshots)."""
        for inter in self.interactions.values():
            for live in [inter.original, *inter.followups]:
                if live is not None and live.id == message.id:
                    return live
        for messages in self.sent_channel_messages.values():
            for live in messages:
                if live.id == message.id:
                    return live
        raise ValueError(f"message {message.id} is not one the bot sent")

    async def _dispatch_interaction(self, kind: int, data: dict[str, Any], user: FakeUser,
                                    guild: FakeGuild | None, channel_id: int, roles: list[str] | tuple[str, ...],
                                    locale: str, message: FakeMessage | None = None) -> FakeInteraction:
        # Deliberately not Discord's token shape (base64 "interaction:…"): a test then proves the bot
        # redacts tokens where they appear (URLs, payload fields), not merely by their prefix.
        permissions = guild.permissions_in(channel_id) if guild is not None else int(ALL_PERMISSIONS)
        inter = FakeInteraction(snowflake(), "itoken." + secrets.token_urlsafe(32), kind, channel_id,
                                guild.id if guild else None, original=message, app_permissions=permissions)
        payload: dict[str, Any] = {
            "id": str(inter.id), "application_id": str(self.application_id), "type": kind, "data": data,
            "channel_id": str(channel_id), "token": inter.token, "version": 1,
            "app_permissions": str(permissions), "locale": locale, "entitlements": [],
            "attachment_size_limit": self.attachment_size_limit,
        }
        if guild is not None:
            payload.update(guild_id=str(guild.id), guild_locale="en-US", context=0,
                           guild={"id": str(guild.id), "locale": "en-US", "features": []},
                           channel=guild.location_json(channel_id),
                           member={**guild.member_json(user, roles), "permissions": ALL_PERMISSIONS},
                           authorizing_integration_owners={"0": str(guild.id)})
        else:
            payload.update(user=user.to_json(), context=1,
                           channel={"id": str(channel_id), "type": 1, "recipients": [user.to_json()]},
                           authorizing_integration_owners={"1": str(user.id)})
        if message is not None:
            payload["message"] = message.to_json(self.cdn_base)
        self.interactions[inter.id] = inter
        self.interactions_by_token[inter.token] = inter
        inter.dispatched_at = time.monotonic()
        await self.gateway.dispatch("INTERACTION_CREATE", payload)
        return inter
