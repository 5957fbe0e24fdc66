"""The gateway websocket of the fake: v10 JSON, HELLO/heartbeats, IDENTIFY/READY, RESUME/replay.

One session at a time (one bot, one shard). Events are numbered and kept for the session, so
events dispatched while the socket is down are replayed on RESUME, as Discord does.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

if TYPE_CHECKING:
    from tests.fake_discord.server import FakeDiscord

log = logging.getLogger(__name__)

DISPATCH, HEARTBEAT, IDENTIFY, PRESENCE, VOICE_STATE = 0, 1, 2, 3, 4
RESUME, RECONNECT, REQUEST_MEMBERS, INVALID_SESSION, HELLO, HEARTBEAT_ACK = 6, 7, 8, 9, 10, 11

CLOSE_UNKNOWN_ERROR = 4000
CLOSE_AUTHENTICATION_FAILED = 4004
CLOSE_DECODE_ERROR = 4002
CLOSE_INVALID_API_VERSION = 4012

try:  # discord.py asks for zstd-stream only when it can decompress it; answer in kind if we can.
    import zstandard
except ImportError:  # pragma: no cover - depends on the environment
    zstandard = None


class Connection:
    """One websocket, with its compression stream: zlib-stream is one deflate stream for the
    whole connection, each message ending in a sync flush (discord.py waits for 00 00 ff ff)."""

    def __init__(self, ws: web.WebSocketResponse, compress: str | None) -> None:
        self.ws = ws
        self.lock = asyncio.Lock()
        self.zlib = zlib.compressobj() if compress == "zlib-stream" else None
        self.zstd = zstandard.ZstdCompressor() if compress == "zstd-stream" and zstandard else None

    async def send(self, payload: dict[str, Any]) -> None:
        raw = json.dumps(payload).encode()
        async with self.lock:  # compressor state and frame order must agree
            if self.zlib is not None:
                await self.ws.send_bytes(self.zlib.compress(raw) + self.zlib.flush(zlib.Z_SYNC_FLUSH))
            elif self.zstd is not None:
                await self.ws.send_bytes(self.zstd.compress(raw))
            else:
                await self.ws.send_str(raw.decode())


@dataclass
class Session:
    id: str
    seq: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)   # every dispatch, for replay
    connection: Connection | None = None


class Gateway:
    def __init__(self, fake: FakeDiscord) -> None:
        self.fake = fake
        self.session: Session | None = None
        self.ready = asyncio.Event()
        self.connections: set[web.WebSocketResponse] = set()

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        self.connections.add(ws)
        self.fake.gateway_connections.append((request.path, dict(request.query)))
        conn = Connection(ws, request.query.get("compress"))
        try:
            if request.query.get("v") != "10":
                await ws.close(code=CLOSE_INVALID_API_VERSION, message=b"Invalid API version")
                return ws
            if request.query.get("encoding", "json") != "json":
                await ws.close(code=CLOSE_DECODE_ERROR, message=b"Only JSON encoding is faked")
                return ws
            await conn.send({"op": HELLO, "d": {"heartbeat_interval": int(self.fake.heartbeat_interval * 1000)},
                             "s": None, "t": None})
            async for msg in ws:
                if msg.type is not WSMsgType.TEXT:
                    log.warning("fake gateway: unexpected frame %s", msg.type)
                    continue
                await self._received(conn, json.loads(msg.data))
        except ConnectionResetError:
            pass
        finally:
            self.connections.discard(ws)
            if self.session is not None and self.session.connection is conn:
                self.session.connection = None
        return ws

    async def _received(self, conn: Connection, payload: dict[str, Any]) -> None:
        op, data = payload.get("op"), payload.get("d")
        if op == HEARTBEAT:
            self.fake.heartbeat_acks.append(time.monotonic())
            await conn.send({"op": HEARTBEAT_ACK, "d": None, "s": None, "t": None})
        elif op == IDENTIFY:
            await self._identify(conn, data)
        elif op == RESUME:
            await self._resume(conn, data)
        elif op == REQUEST_MEMBERS:
            await self._members_chunk(data)
        elif op in (PRESENCE, VOICE_STATE):
            self.fake.presence_updates.append(data)
        else:
            log.error("fake gateway: unknown opcode %s: %s", op, payload)

    async def _identify(self, conn: Connection, data: dict[str, Any]) -> None:
        if data.get("token") != self.fake.token:
            log.info("fake gateway: IDENTIFY with a wrong token, closing 4004")
            await conn.ws.close(code=CLOSE_AUTHENTICATION_FAILED, message=b"Authentication failed.")
            return
        self.fake.identifies.append({k: v for k, v in data.items() if k != "token"})
        self.session = Session(id=secrets.token_hex(16), connection=conn)
        ready: dict[str, Any] = {
            "v": 10, "user": {**self.fake.bot_user.to_json(), "verified": True, "mfa_enabled": False},
            "guilds": [{"id": str(g), "unavailable": True} for g in self.fake.guilds],
            "session_id": self.session.id, "session_type": "normal",
            "resume_gateway_url": self.fake.resume_gateway_url,
            "application": {"id": str(self.fake.application_id), "flags": 0},
            "private_channels": [], "relationships": [], "presences": [], "user_settings": {},
            "geo_ordered_rtc_regions": [], "guild_join_requests": [],
        }
        if "shard" in data:
            ready["shard"] = data["shard"]
        await self.dispatch("READY", ready)
        for guild in list(self.fake.guilds.values()):
            await self.dispatch("GUILD_CREATE", guild.to_json(self.fake.bot_user, unavailable=False))
        self.ready.set()

    async def _resume(self, conn: Connection, data: dict[str, Any]) -> None:
        session = self.session
        if data.get("token") != self.fake.token or session is None or data.get("session_id") != session.id:
            log.info("fake gateway: RESUME of an unknown session, answering INVALID_SESSION")
            await conn.send({"op": INVALID_SESSION, "d": False, "s": None, "t": None})
            return
        session.connection = conn
        after = data.get("seq") or 0
        missed = [e for e in session.events if e["s"] > after]
        for event in missed:
            await conn.send(event)
        self.fake.replayed_events.extend(e["t"] for e in missed)
        self.fake.resumes += 1
        await self.dispatch("RESUMED", {})
        log.info("fake gateway: RESUMED session %s, replayed %d events", session.id, len(missed))

    async def _members_chunk(self, data: dict[str, Any]) -> None:
        guild = self.fake.guilds.get(int(data["guild_id"]))
        if guild is None:
            return
        members = [guild.member_json(u) for u in [self.fake.bot_user, *self.fake.users.values()]]
        chunk = {"guild_id": str(guild.id), "members": members, "chunk_index": 0, "chunk_count": 1,
                 "not_found": [], "presences": []}
        if data.get("nonce"):
            chunk["nonce"] = data["nonce"]
        await self.dispatch("GUILD_MEMBERS_CHUNK", chunk)

    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        """Number the event, keep it for replay and send it if the socket is up."""
        session = self.session
        if session is None:
            raise RuntimeError(f"cannot dispatch {event}: no bot has identified with the fake gateway")
        session.seq += 1
        payload = {"op": DISPATCH, "t": event, "s": session.seq, "d": data}
        session.events.append(payload)
        if session.connection is not None and not session.connection.ws.closed:
            try:
                await session.connection.send(payload)
            except ConnectionResetError:
                log.info("fake gateway: %s kept for replay, the socket is closing", event)

    async def drop(self, *, resumable: bool) -> None:
        session = self.session
        if session is None or session.connection is None:
            raise RuntimeError("no gateway connection to drop")
        conn = session.connection
        if resumable:
            await conn.ws.close(code=CLOSE_UNKNOWN_ERROR, message=b"Dropped by the test")
        else:
            self.session = None
            self.ready.clear()
            await conn.send({"op": INVALID_SESSION, "d": False, "s": None, "t": None})

    async def close_all(self) -> None:
        for ws in list(self.connections):
            await ws.close(code=1001, message=b"Fake Discord shutting down")
