"""The REST side of the fake: one catch-all handler, a route table, failure injection.

One catch-all handler (rather than one aiohttp route each) so every request is recorded and
can be failed on purpose in one place, and so a route the fake does not know is answered 404
and logged loudly instead of silently missing.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from tests.fake_discord.models import (
    ATTACH_FILES,
    EMBED_LINKS,
    FLAG_EPHEMERAL,
    FLAG_LOADING,
    FakeAttachment,
    FakeInteraction,
    FakeMessage,
    FakeResponse,
    RecordedFile,
    RecordedRequest,
    snowflake,
)

if TYPE_CHECKING:
    from tests.fake_discord.server import FakeDiscord

log = logging.getLogger(__name__)

API_PREFIX = "/api/v10"
MAX_CONTENT = 2000
MAX_EMBEDS = 10
MAX_ATTACHMENTS = 10


class DiscordError(Exception):
    """An API error answered as Discord does: status, JSON code and message."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass
class Failure:
    method: str
    pattern: re.Pattern[str]
    status: int
    remaining: int
    retry_after: float
    global_: bool
    message: str | None = None


Handler = Callable[[re.Match[str], RecordedRequest], Awaitable[Any]]


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    # Exactly "application/json": discord.py compares the header verbatim, and aiohttp's
    # json_response would append "; charset=utf-8", turning every reply into a plain string.
    return web.Response(body=json.dumps(body).encode(), status=status,
                        headers={"Content-Type": "application/json", **(headers or {})})


def failure_response(failure: Failure, path: str) -> web.Response:
    if failure.status == 429:
        # Via marks the 429 as Discord's own (without it discord.py assumes a Cloudflare ban).
        headers = {"Via": "1.1 google", "Retry-After": str(max(1, math.ceil(failure.retry_after))),
                   "X-RateLimit-Scope": "global" if failure.global_ else "user",
                   "X-RateLimit-Limit": "5", "X-RateLimit-Remaining": "0",
                   "X-RateLimit-Reset-After": f"{failure.retry_after:.3f}"}
        if failure.global_:
            headers["X-RateLimit-Global"] = "true"
        body = {"message": "You are being rate limited.", "retry_after": failure.retry_after,
                "global": failure.global_, "code": 0}
        return json_response(body, 429, headers)
    message = failure.message.replace("{path}", path) if failure.message else f"{failure.status}: Injected failure"
    return json_response({"message": message, "code": 0}, failure.status)


class Rest:
    """REST routes of the Discord API v10 that discord.py uses, on behalf of one FakeDiscord."""

    def __init__(self, fake: FakeDiscord) -> None:
        self.fake = fake
        self.failures: list[Failure] = []
        app = r"/applications/(?P<app>\d+)"
        hook = r"/webhooks/(?P<app>\d+)/(?P<token>[^/]+)"
        self.routes: list[tuple[str, re.Pattern[str], Handler, bool]] = []
        for method, pattern, handler, auth in [
            ("GET", r"/gateway", self.get_gateway, False),
            ("GET", r"/gateway/bot", self.get_gateway_bot, True),
            ("GET", r"/users/@me", self.get_me, True),
            ("GET", r"/users/(?P<user>\d+)", self.get_user, True),
            ("GET", r"/users/@me/guilds", self.get_my_guilds, True),
            ("DELETE", r"/users/@me/guilds/(?P<guild>\d+)", self.leave_guild, True),
            ("GET", r"/oauth2/applications/@me", self.get_application, True),
            ("GET", r"/applications/@me", self.get_application, True),
            ("GET", app + r"(?:/guilds/(?P<guild>\d+))?/commands", self.get_commands, True),
            ("PUT", app + r"(?:/guilds/(?P<guild>\d+))?/commands", self.put_commands, True),
            ("POST", app + r"(?:/guilds/(?P<guild>\d+))?/commands", self.post_command, True),
            ("DELETE", app + r"(?:/guilds/(?P<guild>\d+))?/commands/(?P<cmd>\d+)", self.delete_command, True),
            ("POST", r"/interactions/(?P<id>\d+)/(?P<token>[^/]+)/callback", self.callback, False),
            ("POST", hook, self.followup, False),
            ("GET", hook + r"/messages/(?P<msg>@original|\d+)", self.get_webhook_message, False),
            ("PATCH", hook + r"/messages/(?P<msg>@original|\d+)", self.edit_webhook_message, False),
            ("DELETE", hook + r"/messages/(?P<msg>@original|\d+)", self.delete_webhook_message, False),
            ("GET", r"/channels/(?P<channel>\d+)", self.get_channel, True),
            ("POST", r"/channels/(?P<channel>\d+)/messages", self.post_channel_message, True),
            ("POST", r"/channels/(?P<channel>\d+)/typing", self.typing, True),
        ]:
            self.routes.append((method, re.compile(pattern + r"\Z"), handler, auth))

    # -- plumbing ---------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.Response:
        path = request.path[len(API_PREFIX):] or "/"
        body, files = await self._read_body(request)
        record = RecordedRequest(method=request.method, path=path, query=dict(request.query),
                                 json=body, files=files)
        self.fake.requests.append(record)
        response = await self._answer(request, record)
        record.status = response.status
        return response

    async def _answer(self, request: web.Request, record: RecordedRequest) -> web.Response:
        for failure in self.failures:
            if failure.remaining > 0 and failure.method == record.method and failure.pattern.search(record.path):
                failure.remaining -= 1
                log.info("fake discord: injected %s on %s %s", failure.status, record.method, record.path)
                return failure_response(failure, record.path)
        for method, pattern, handler, auth in self.routes:
            match = pattern.match(record.path)
            if match is None or method != record.method:
                continue
            if auth and request.headers.get("Authorization") != f"Bot {self.fake.token}":
                return json_response({"message": "401: Unauthorized", "code": 0}, 401)
            try:
                result = await handler(match, record)
            except DiscordError as exc:
                log.info("fake discord: %s %s -> %s %s", record.method, record.path, exc.status, exc.message)
                return json_response({"message": exc.message, "code": exc.code}, exc.status)
            if result is None:
                return web.Response(status=204)
            return json_response(result)
        log.error("fake discord: UNKNOWN ROUTE %s %s (answered 404; add it to tests/fake_discord/rest.py)",
                  record.method, record.path)
        self.fake.unknown_requests.append(record)
        return json_response({"message": "404: Not Found", "code": 0}, 404)

    async def _read_body(self, request: web.Request) -> tuple[Any, list[RecordedFile]]:
        if not request.body_exists:
            return None, []
        if request.content_type.startswith("multipart/"):
            body: Any = None
            files: list[RecordedFile] = []
            reader = await request.multipart()
            async for part in reader:
                data = await part.read(decode=False)
                if part.name == "payload_json":
                    body = json.loads(data)
                else:
                    files.append(RecordedFile(field=part.name or "", filename=part.filename or "",
                                              content_type=part.headers.get("Content-Type", ""),
                                              data=bytes(data)))
            return body, files
        raw = await request.read()
        if not raw:
            return None, []
        try:
            return json.loads(raw), []
        except ValueError:
            return raw.decode("utf-8", "replace"), []

    # -- gateway, users, application --------------------------------------------------------

    async def get_gateway(self, m: re.Match[str], r: RecordedRequest) -> Any:
        return {"url": self.fake.gateway_url}

    async def get_gateway_bot(self, m: re.Match[str], r: RecordedRequest) -> Any:
        return {"url": self.fake.gateway_url, "shards": 1,
                "session_start_limit": {"total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1}}

    async def get_me(self, m: re.Match[str], r: RecordedRequest) -> Any:
        return {**self.fake.bot_user.to_json(), "verified": True, "mfa_enabled": False, "email": None}

    async def get_user(self, m: re.Match[str], r: RecordedRequest) -> Any:
        user = self.fake.users.get(int(m["user"]))
        if user is None:
            raise DiscordError(404, 10013, "Unknown User")
        return user.to_json()

    async def get_application(self, m: re.Match[str], r: RecordedRequest) -> Any:
        fake = self.fake
        return {"id": str(fake.application_id), "name": fake.bot_user.name, "icon": None, "description": "",
                "summary": "", "rpc_origins": [], "bot_public": True, "bot_require_code_grant": False,
                "owner": fake.owner.to_json(), "team": None, "verify_key": "0" * 64, "flags": 0,
                "bot": fake.bot_user.to_json(), "interactions_endpoint_url": None, "tags": [],
                "redirect_uris": [], "approximate_guild_count": len(fake.guilds)}

    async def get_my_guilds(self, m: re.Match[str], r: RecordedRequest) -> Any:
        """The guilds the bot is in, as partial guilds, paged by id like Discord (limit 1-200)."""
        limit = max(1, min(200, int(r.query.get("limit", 200))))
        ids = sorted(self.fake.guilds)
        if "before" in r.query:
            ids = [g for g in ids if g < int(r.query["before"])][-limit:]
        else:
            ids = [g for g in ids if g > int(r.query.get("after", 0))][:limit]
        return [{"id": str(g), "name": self.fake.guilds[g].name, "icon": None, "banner": None, "owner": False,
                 "permissions": str(self.fake.guilds[g].app_permissions[None]), "features": [],
                 "approximate_member_count": 2, "approximate_presence_count": 1} for g in ids]

    async def leave_guild(self, m: re.Match[str], r: RecordedRequest) -> Any:
        guild_id = int(m["guild"])
        if guild_id not in self.fake.guilds:
            raise DiscordError(404, 10004, "Unknown Guild")
        del self.fake.guilds[guild_id]
        self.fake.left_guilds.append(guild_id)
        await self.fake.gateway.dispatch("GUILD_DELETE", {"id": str(guild_id)})
        return None

    # -- application commands ----------------------------------------------------------------

    def _command_store(self, m: re.Match[str]) -> dict[str, dict[str, Any]]:
        if int(m["app"]) != self.fake.application_id:
            raise DiscordError(403, 50001, "Missing Access")
        guild = m["guild"]
        if guild is not None and int(guild) not in self.fake.guilds:
            raise DiscordError(403, 50001, "Missing Access")
        return self.fake.registered_commands.setdefault(int(guild) if guild else None, {})

    def _registered(self, payload: dict[str, Any], m: re.Match[str], old: dict[str, Any] | None) -> dict[str, Any]:
        if not isinstance(payload, dict) or not payload.get("name"):
            raise DiscordError(400, 50035, "Invalid Form Body: command name required")
        command = {"type": 1, "description": "", "options": [], "default_member_permissions": None,
                   "dm_permission": True, "nsfw": False, "name_localizations": None,
                   "description_localizations": None, "integration_types": [0], "contexts": None, **payload}
        command["id"] = old["id"] if old else str(snowflake())
        command["application_id"] = str(self.fake.application_id)
        command["version"] = str(snowflake())
        if m["guild"]:
            command["guild_id"] = m["guild"]
        return command

    async def get_commands(self, m: re.Match[str], r: RecordedRequest) -> Any:
        return list(self._command_store(m).values())

    async def put_commands(self, m: re.Match[str], r: RecordedRequest) -> Any:
        store = self._command_store(m)
        if not isinstance(r.json, list):
            raise DiscordError(400, 50035, "Invalid Form Body: expected a list of commands")
        new = {}
        for payload in r.json:
            new[payload.get("name")] = self._registered(payload, m, store.get(payload.get("name")))
        store.clear()
        store.update(new)
        return list(store.values())

    async def post_command(self, m: re.Match[str], r: RecordedRequest) -> Any:
        store = self._command_store(m)
        command = self._registered(r.json, m, store.get((r.json or {}).get("name")))
        store[command["name"]] = command
        return command

    async def delete_command(self, m: re.Match[str], r: RecordedRequest) -> Any:
        store = self._command_store(m)
        for name, command in list(store.items()):
            if command["id"] == m["cmd"]:
                del store[name]
                return None
        raise DiscordError(404, 10063, "Unknown application command")

    # -- interactions ----------------------------------------------------------------------

    def _build(self, message: FakeMessage, payload: dict[str, Any], files: list[RecordedFile],
               *, limit: int, editing: bool, permissions: int) -> None:
        """Apply a create/edit payload to `message`, after checking Discord's limits and the bot's
        permissions (so a refused request changes nothing)."""
        if files and not permissions & ATTACH_FILES:
            raise DiscordError(403, 50013, "Missing Permissions (Attach Files)")
        if payload.get("embeds") and not permissions & EMBED_LINKS:
            raise DiscordError(403, 50013, "Missing Permissions (Embed Links)")
        content = payload.get("content", message.content) or ""
        embeds = payload.get("embeds", message.embeds) or []
        components = payload.get("components", message.components) or []
        uploads = {}
        for f in files:
            index = re.fullmatch(r"files\[(\d+)\]", f.field)
            uploads[int(index[1]) if index else len(uploads)] = f
        if "attachments" in payload and payload["attachments"] is not None:
            existing = {a.id: a for a in message.attachments}
            attachments = []
            for item in payload["attachments"]:
                aid = int(item["id"])
                if aid in uploads:
                    f = uploads.pop(aid)
                    attachments.append(FakeAttachment(snowflake(), item.get("filename") or f.filename,
                                                      f.content_type, f.data, item.get("description")))
                elif aid in existing:
                    attachments.append(existing[aid])
                else:
                    raise DiscordError(400, 50035, f"Invalid Form Body: attachment {aid} has no file")
        else:
            attachments = list(message.attachments) if editing else []
        attachments += [FakeAttachment(snowflake(), f.filename, f.content_type, f.data) for f in uploads.values()]
        if len(content) > MAX_CONTENT:
            raise DiscordError(400, 50035, f"Invalid Form Body: content longer than {MAX_CONTENT}")
        if len(embeds) > MAX_EMBEDS:
            raise DiscordError(400, 50035, f"Invalid Form Body: more than {MAX_EMBEDS} embeds")
        if len(attachments) > MAX_ATTACHMENTS:
            raise DiscordError(400, 50035, f"Invalid Form Body: more than {MAX_ATTACHMENTS} attachments")
        if sum(len(f.data) for f in files) > limit:
            raise DiscordError(413, 40005, "Request entity too large")
        if not editing and not (content or embeds or attachments or components):
            raise DiscordError(400, 50006, "Cannot send an empty message")
        message.content, message.embeds, message.components = content, embeds, components
        message.attachments = attachments
        for a in attachments:
            self.fake.attachments[a.id] = a
        if editing:
            message.edits += 1

    def _new_message(self, inter: FakeInteraction, flags: int) -> FakeMessage:
        return FakeMessage(id=snowflake(), channel_id=inter.channel_id, guild_id=inter.guild_id,
                           author=self.fake.bot_user, flags=flags, webhook_id=self.fake.application_id,
                           interaction_id=inter.id)

    async def callback(self, m: re.Match[str], r: RecordedRequest) -> Any:
        inter = self.fake.interactions.get(int(m["id"]))
        if inter is None or inter.token != m["token"]:
            raise DiscordError(404, 10062, "Unknown interaction")
        if inter.response is not None:
            raise DiscordError(400, 40060, "Interaction has already been acknowledged.")
        elapsed = time.monotonic() - inter.dispatched_at
        if elapsed > self.fake.callback_deadline:
            log.warning("fake discord: interaction %s answered after %.2f s (deadline %.1f s)",
                        inter.id, elapsed, self.fake.callback_deadline)
            raise DiscordError(404, 10062, "Unknown interaction")
        body = r.json if isinstance(r.json, dict) else {}
        kind = int(body.get("type", 0))
        data = body.get("data") or {}
        flags = int(data.get("flags") or 0)
        message: FakeMessage | None = None
        if kind == 4:
            message = self._new_message(inter, flags & FLAG_EPHEMERAL)
            self._build(message, data, r.files, limit=self.fake.attachment_size_limit, editing=False,
                        permissions=inter.app_permissions)
            inter.original = message
        elif kind == 5:
            inter.original = self._new_message(inter, (flags & FLAG_EPHEMERAL) | FLAG_LOADING)
            inter._first_followup_pending = True
        elif kind == 7:
            if inter.original is None:
                raise DiscordError(400, 40004, "Interaction has no message to update")
            self._build(inter.original, data, r.files, limit=self.fake.attachment_size_limit, editing=True,
                        permissions=inter.app_permissions)
            message = inter.original
        elif kind == 8:
            if inter.type != 4:
                raise DiscordError(400, 50035, "Invalid Form Body: autocomplete results answer autocomplete only")
            choices = data.get("choices")
            if not isinstance(choices, list) or len(choices) > 25 or any(
                    not 1 <= len(str(c.get("name", ""))) <= 100 or len(str(c.get("value", ""))) > 100
                    for c in choices):
                raise DiscordError(400, 50035, "Invalid Form Body: choices (at most 25, names 1-100 characters)")
        elif kind not in (6, 9):
            raise DiscordError(400, 50035, f"Invalid Form Body: unknown callback type {kind}")
        inter.response = FakeResponse(type=kind, flags=flags, elapsed=elapsed, data=data, message=message)
        inter._notify(message)
        reply: dict[str, Any] = {"interaction": {
            "id": str(inter.id), "type": inter.type,
            "response_message_loading": kind == 5,
            "response_message_ephemeral": bool(flags & FLAG_EPHEMERAL)}}
        if inter.original is not None and kind in (4, 5, 7):
            reply["interaction"]["response_message_id"] = str(inter.original.id)
        if message is not None:
            reply["resource"] = {"type": kind, "message": message.to_json(self.fake.cdn_base)}
        return reply

    def _webhook_interaction(self, m: re.Match[str]) -> FakeInteraction:
        if int(m["app"]) != self.fake.application_id:
            raise DiscordError(404, 10015, "Unknown Webhook")
        inter = self.fake.interactions_by_token.get(m["token"])
        if inter is None or inter.response is None:
            raise DiscordError(404, 10015, "Unknown Webhook")
        if time.monotonic() - inter.dispatched_at > self.fake.token_lifetime:
            raise DiscordError(401, 50027, "Invalid Webhook Token")
        return inter

    def _webhook_message(self, inter: FakeInteraction, msg: str) -> FakeMessage:
        if msg == "@original":
            if inter.original is None:
                raise DiscordError(404, 10008, "Unknown Message")
            return inter.original
        for message in [inter.original, *inter.followups]:
            if message is not None and message.id == int(msg):
                return message
        raise DiscordError(404, 10008, "Unknown Message")

    async def followup(self, m: re.Match[str], r: RecordedRequest) -> Any:
        inter = self._webhook_interaction(m)
        payload = r.json if isinstance(r.json, dict) else {}
        if inter._first_followup_pending and inter.original is not None:
            # Discord: the first followup after a defer replaces the "thinking" message and keeps
            # the defer's visibility, whatever flags the followup asked for.
            message = inter.original
            self._build(message, payload, r.files, limit=self.fake.attachment_size_limit, editing=False,
                        permissions=inter.app_permissions)
            message.flags &= ~FLAG_LOADING
            inter._first_followup_pending = False
        else:
            message = self._new_message(inter, int(payload.get("flags") or 0) & FLAG_EPHEMERAL)
            self._build(message, payload, r.files, limit=self.fake.attachment_size_limit, editing=False,
                        permissions=inter.app_permissions)
            inter.followups.append(message)
        inter._notify(message)
        if r.query.get("wait", "").lower() not in ("true", "1"):
            return None
        return message.to_json(self.fake.cdn_base)

    async def get_webhook_message(self, m: re.Match[str], r: RecordedRequest) -> Any:
        inter = self._webhook_interaction(m)
        return self._webhook_message(inter, m["msg"]).to_json(self.fake.cdn_base)

    async def edit_webhook_message(self, m: re.Match[str], r: RecordedRequest) -> Any:
        inter = self._webhook_interaction(m)
        message = self._webhook_message(inter, m["msg"])
        if message.deleted:
            raise DiscordError(404, 10008, "Unknown Message")
        payload = r.json if isinstance(r.json, dict) else {}
        replacing_loading = bool(message.flags & FLAG_LOADING)
        self._build(message, payload, r.files, limit=self.fake.attachment_size_limit,
                    editing=not replacing_loading, permissions=inter.app_permissions)
        if replacing_loading:
            message.flags &= ~FLAG_LOADING
            inter._first_followup_pending = False
        inter._notify(message)
        return message.to_json(self.fake.cdn_base)

    async def delete_webhook_message(self, m: re.Match[str], r: RecordedRequest) -> Any:
        inter = self._webhook_interaction(m)
        message = self._webhook_message(inter, m["msg"])
        message.deleted = True
        inter._notify()
        return None

    # -- channels ------------------------------------------------------------------------------

    def _channel(self, m: re.Match[str]) -> tuple[int, Any]:
        channel_id = int(m["channel"])
        for guild in self.fake.guilds.values():
            if channel_id in guild.channels.values() or guild.thread(channel_id) is not None:
                return channel_id, guild
        raise DiscordError(404, 10003, "Unknown Channel")

    async def get_channel(self, m: re.Match[str], r: RecordedRequest) -> Any:
        channel_id, guild = self._channel(m)
        return guild.location_json(channel_id)

    async def post_channel_message(self, m: re.Match[str], r: RecordedRequest) -> Any:
        channel_id, guild = self._channel(m)
        message = FakeMessage(id=snowflake(), channel_id=channel_id, guild_id=guild.id, author=self.fake.bot_user)
        payload = r.json if isinstance(r.json, dict) else {}
        self._build(message, payload, r.files, limit=self.fake.attachment_size_limit, editing=False,
                    permissions=guild.permissions_in(channel_id))
        self.fake.sent_channel_messages.setdefault(channel_id, []).append(message)
        return message.to_json(self.fake.cdn_base)

    async def typing(self, m: re.Match[str], r: RecordedRequest) -> Any:
        self._channel(m)
        return None


async def serve_attachment(fake: FakeDiscord, request: web.Request) -> web.StreamResponse:
    """The CDN: attachment bytes by id, for user uploads (resolved attachments) and bot uploads."""
    attachment = fake.attachments.get(int(request.match_info["id"]))
    fake.cdn_requests.append(request.path)
    if attachment is None or attachment.filename != request.match_info["filename"]:
        log.error("fake discord: unknown CDN file %s", request.path)
        return web.Response(status=404, text="404: Not Found")
    return web.Response(body=attachment.data, content_type=attachment.content_type or "application/octet-stream")
