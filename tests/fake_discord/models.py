"""What the fake Discord knows and records, and the JSON shapes discord.py parses.

Payload builders live next to the dataclasses so that every object the fake sends is built in
one place; field sets follow what discord.py 2.7 reads (missing keys raise KeyError inside the
client, which a test would only see as a silent hang).
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

DISCORD_EPOCH_MS = 1420070400000
_counter = itertools.count()

# Text channel, threads, button, action row, ephemeral flag: the Discord enum values the fake speaks.
CHANNEL_TEXT = 0
CHANNEL_PUBLIC_THREAD = 11
CHANNEL_PRIVATE_THREAD = 12
COMPONENT_ACTION_ROW = 1
COMPONENT_BUTTON = 2
COMPONENT_STRING_SELECT = 3
FLAG_EPHEMERAL = 1 << 6
FLAG_LOADING = 1 << 7
ALL_PERMISSIONS = str((1 << 50) - 1)
EMBED_LINKS = 1 << 14
ATTACH_FILES = 1 << 15


def permissions_without(*bits: int) -> int:
    """Every permission but `bits`, e.g. permissions_without(ATTACH_FILES)."""
    value = int(ALL_PERMISSIONS)
    for bit in bits:
        value &= ~bit
    return value


def snowflake() -> int:
    """A fresh id that encodes now: discord.py derives created_at and the 15-minute interaction
    expiry from it, so an id from a fixed epoch makes every interaction look expired."""
    ms = int(time.time() * 1000) - DISCORD_EPOCH_MS
    return (ms << 22) | (1 << 17) | (next(_counter) & 0xFFF)


def iso_now() -> str:
    return datetime.now(timezone.utc).isoformat()


@dataclass
class FakeUser:
    id: int
    name: str
    bot: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"id": str(self.id), "username": self.name, "global_name": self.name,
                "discriminator": "0", "avatar": None, "bot": self.bot, "public_flags": 0, "flags": 0}


@dataclass
class FakeThread:
    """A thread inside a text channel of a guild (public: type 11, private: type 12)."""

    id: int
    name: str
    parent_id: int
    owner_id: int
    private: bool = False
    listed: bool = True          # sent in GUILD_CREATE's `threads` (False: only in interactions)

    def to_json(self, guild_id: int) -> dict[str, Any]:
        return {"id": str(self.id), "guild_id": str(guild_id), "parent_id": str(self.parent_id),
                "owner_id": str(self.owner_id), "name": self.name,
                "type": CHANNEL_PRIVATE_THREAD if self.private else CHANNEL_PUBLIC_THREAD,
                "last_message_id": None, "message_count": 0, "member_count": 1, "total_message_sent": 0,
                "rate_limit_per_user": 0, "flags": 0, "applied_tags": [],
                "thread_metadata": {"archived": False, "auto_archive_duration": 1440,
                                    "archive_timestamp": iso_now(), "locked": False, "invitable": True,
                                    "create_timestamp": iso_now()}}


@dataclass
class FakeGuild:
    id: int
    name: str
    channels: dict[str, int]          # name -> channel id, in creation order
    roles: dict[str, int]             # name -> role id (the @everyone role has the guild's id)
    owner_id: int
    threads: dict[str, FakeThread] = field(default_factory=dict)   # name -> thread
    # The bot's permissions (an integer bit set) sent as `app_permissions` with each interaction:
    # per channel or thread id, else the guild's (key None). Threads inherit their parent's.
    app_permissions: dict[int | None, int] = field(default_factory=lambda: {None: int(ALL_PERMISSIONS)})

    def channel_id(self, channel: str | int | None) -> int:
        """Resolve a channel or thread name (or id) of this guild; None means its first channel."""
        if channel is None:
            return next(iter(self.channels.values()))
        if isinstance(channel, int):
            if channel not in self.channels.values() and channel not in {t.id for t in self.threads.values()}:
                raise ValueError(f"channel {channel} is not in guild {self.name!r}")
            return channel
        if channel in self.threads:
            return self.threads[channel].id
        try:
            return self.channels[channel]
        except KeyError:
            raise ValueError(f"guild {self.name!r} has no channel or thread {channel!r}; "
                             f"it has {sorted(self.channels) + sorted(self.threads)}") from None

    def thread(self, channel_id: int) -> FakeThread | None:
        return next((t for t in self.threads.values() if t.id == channel_id), None)

    def permissions_in(self, channel_id: int) -> int:
        """The bot's permissions in a channel or thread: its own, its parent's, or the guild's."""
        thread = self.thread(channel_id)
        for key in (channel_id, thread.parent_id if thread else None):
            if key is not None and key in self.app_permissions:
                return self.app_permissions[key]
        return self.app_permissions[None]

    def location_json(self, channel_id: int) -> dict[str, Any]:
        """The `channel` object of an interaction from this channel or thread."""
        thread = self.thread(channel_id)
        if thread is not None:
            return thread.to_json(self.id)
        name = next(n for n, cid in self.channels.items() if cid == channel_id)
        return self.channel_json(name)

    def role_ids(self, names: tuple[str, ...] | list[str]) -> list[str]:
        unknown = [n for n in names if n not in self.roles]
        if unknown:
            raise ValueError(f"guild {self.name!r} has no roles {unknown}; it has {sorted(self.roles)}")
        return [str(self.roles[n]) for n in names]

    def channel_json(self, name: str) -> dict[str, Any]:
        return {"id": str(self.channels[name]), "type": CHANNEL_TEXT, "name": name, "guild_id": str(self.id),
                "position": list(self.channels).index(name), "permission_overwrites": [], "nsfw": False,
                "parent_id": None, "topic": None, "last_message_id": None, "rate_limit_per_user": 0,
                "flags": 0}

    def role_json(self, name: str) -> dict[str, Any]:
        everyone = name == "@everyone"
        return {"id": str(self.roles[name]), "name": name, "color": 0, "colors": {"primary_color": 0},
                "hoist": False, "icon": None, "unicode_emoji": None,
                "position": 0 if everyone else list(self.roles).index(name),
                "permissions": ALL_PERMISSIONS if everyone else "0", "managed": False,
                "mentionable": False, "flags": 0}

    def member_json(self, user: FakeUser, roles: tuple[str, ...] | list[str] = ()) -> dict[str, Any]:
        return {"user": user.to_json(), "nick": None, "avatar": None, "roles": self.role_ids(roles),
                "joined_at": iso_now(), "premium_since": None, "deaf": False, "mute": False,
                "flags": 0, "pending": False, "communication_disabled_until": None}

    def to_json(self, bot_user: FakeUser, *, unavailable: bool | None) -> dict[str, Any]:
        """GUILD_CREATE payload. `unavailable=False` marks a guild listed in READY becoming
        available; omitting it (None) is a guild the bot just joined (discord.py: on_guild_join)."""
        data: dict[str, Any] = {
            "id": str(self.id), "name": self.name, "icon": None, "splash": None, "discovery_splash": None,
            "owner_id": str(self.owner_id), "afk_channel_id": None, "afk_timeout": 300,
            "verification_level": 0, "default_message_notifications": 0, "explicit_content_filter": 0,
            "roles": [self.role_json(n) for n in self.roles], "emojis": [], "stickers": [],
            "features": [], "mfa_level": 0, "application_id": None, "system_channel_id": None,
            "system_channel_flags": 0, "rules_channel_id": None, "vanity_url_code": None,
            "description": None, "banner": None, "premium_tier": 0, "premium_subscription_count": 0,
            "preferred_locale": "en-US", "public_updates_channel_id": None, "nsfw_level": 0,
            "premium_progress_bar_enabled": False, "joined_at": iso_now(), "large": False,
            "member_count": 2, "voice_states": [], "members": [self.member_json(bot_user)],
            "channels": [self.channel_json(n) for n in self.channels],
            "threads": [t.to_json(self.id) for t in self.threads.values() if t.listed], "presences": [],
            "stage_instances": [], "guild_scheduled_events": [], "soundboard_sounds": [],
        }
        if unavailable is not None:
            data["unavailable"] = unavailable
        return data


@dataclass
class RecordedFile:
    field: str                # multipart field name, e.g. "files[0]"
    filename: str
    content_type: str
    data: bytes


@dataclass
class RecordedRequest:
    """One REST request as the fake received it (the Authorization header is not kept)."""

    method: str
    path: str                 # relative to /api/v10, e.g. "/users/@me"
    query: dict[str, str]
    json: Any                 # the JSON body, or payload_json of a multipart body; None if none
    files: list[RecordedFile]
    status: int = 0           # what the fake answered
    time: float = field(default_factory=time.monotonic)


@dataclass
class FakeAttachment:
    id: int
    filename: str
    content_type: str
    data: bytes
    description: str | None = None

    def to_json(self, cdn_base: str, channel_id: int) -> dict[str, Any]:
        url = f"{cdn_base}/attachments/{channel_id}/{self.id}/{self.filename}"
        return {"id": str(self.id), "filename": self.filename, "size": len(self.data), "url": url,
                "proxy_url": url, "content_type": self.content_type, "description": self.description,
                "ephemeral": False}


@dataclass
class FakeMessage:
    """A message as it stands now; edits change it in place (`.edits` counts them)."""

    id: int
    channel_id: int
    guild_id: int | None
    author: FakeUser
    content: str = ""
    embeds: list[dict[str, Any]] = field(default_factory=list)
    components: list[dict[str, Any]] = field(default_factory=list)
    attachments: list[FakeAttachment] = field(default_factory=list)
    flags: int = 0
    edits: int = 0
    deleted: bool = False
    webhook_id: int | None = None
    interaction_id: int | None = None

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & FLAG_EPHEMERAL)

    @property
    def buttons(self) -> list[dict[str, Any]]:
        return [c for row in self.components for c in row.get("components", [])
                if c.get("type") == COMPONENT_BUTTON]

    @property
    def selects(self) -> list[dict[str, Any]]:
        return [c for row in self.components for c in row.get("components", [])
                if c.get("type") == COMPONENT_STRING_SELECT]

    @property
    def custom_ids(self) -> list[str]:
        return [b["custom_id"] for b in self.buttons if "custom_id" in b]

    def to_json(self, cdn_base: str) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": str(self.id), "channel_id": str(self.channel_id), "author": self.author.to_json(),
            "content": self.content, "timestamp": iso_now(), "edited_timestamp": iso_now() if self.edits else None,
            "tts": False, "mention_everyone": False, "mentions": [], "mention_roles": [],
            "attachments": [a.to_json(cdn_base, self.channel_id) for a in self.attachments],
            "embeds": self.embeds, "pinned": False, "type": 0 if self.interaction_id is None else 20,
            "flags": self.flags, "components": self.components,
        }
        if self.guild_id is not None:
            data["guild_id"] = str(self.guild_id)
        if self.webhook_id is not None:
            data["webhook_id"] = str(self.webhook_id)
            data["application_id"] = str(self.webhook_id)
        return data


@dataclass
class FakeResponse:
    """The initial callback (POST /interactions/{id}/{token}/callback)."""

    type: int                 # 4 message, 5 deferred message, 6 deferred update, 7 update,
                              # 8 autocomplete result (data["choices"]), 9 modal
    flags: int
    elapsed: float            # seconds from dispatch to the callback
    data: dict[str, Any]      # the callback's "data" object as sent
    message: FakeMessage | None = None

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & FLAG_EPHEMERAL)


class FakeInteraction:
    """One dispatched interaction and everything the bot answered to it."""

    def __init__(self, id: int, token: str, type: int, channel_id: int, guild_id: int | None,
                 original: FakeMessage | None = None, app_permissions: int = int(ALL_PERMISSIONS)) -> None:
        self.id = id
        self.token = token
        self.type = type
        self.channel_id = channel_id
        self.guild_id = guild_id
        self.app_permissions = app_permissions    # the bot's permissions where it was invoked
        self.dispatched_at = time.monotonic()
        self.response: FakeResponse | None = None
        # For a component interaction the "original" is the message whose button was pressed.
        self.original: FakeMessage | None = original
        self.followups: list[FakeMessage] = []
        self.messages: list[FakeMessage] = []     # every message shown or changed, in order
        self._read = 0
        self._changed = asyncio.Event()
        self._first_followup_pending = False       # a defer's loading message awaits replacement

    def __repr__(self) -> str:
        return f"<FakeInteraction id={self.id} type={self.type} response={self.response}>"

    def _notify(self, message: FakeMessage | None = None) -> None:
        if message is not None:
            # A snapshot: what the user saw at this point, unchanged by later edits.
            self.messages.append(copy.deepcopy(message))
        self._changed.set()

    async def _wait(self, ready, timeout: float, what: str):
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (result := ready()) is None:
            self._changed.clear()
            left = deadline - loop.time()
            if left <= 0:
                raise TimeoutError(f"interaction {self.id}: no {what} within {timeout} s "
                                   f"(response={self.response}, messages={len(self.messages)})")
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except asyncio.TimeoutError:
                pass
        return result

    async def wait_response(self, timeout: float = 3.0) -> FakeResponse:
        return await self._wait(lambda: self.response, timeout, "callback")

    async def wait_followup(self, timeout: float = 30.0) -> FakeMessage:
        """The next message shown or changed for this interaction (callback message, followup or edit)."""
        def ready() -> FakeMessage | None:
            if self._read < len(self.messages):
                self._read += 1
                return self.messages[self._read - 1]
            return None
        return await self._wait(ready, timeout, "followup")
