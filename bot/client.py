"""The bot core: it only wires settings, the search service and the cogs together."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

import discord
from discord.ext import commands

from bot import redaction
from bot.audit import AuditLog
from bot.commandsync import CommandSync, CommandSyncError
from bot.errors import ImageBotTree
from bot.ratelimit import SlidingWindowLimiter
from bot.settings import Settings
from bot.watch import RebuildWatcher

if TYPE_CHECKING:
    from bot.library import Library

log = logging.getLogger(__name__)

EXTENSIONS = ("bot.cogs.guard", "bot.cogs.search")

T = TypeVar("T")


class StartupError(Exception):
    """The bot cannot start usefully; the message is one line for the operator."""


class ImageBot(commands.Bot):
    """Holds what every cog shares. The collections and their models are opened before the bot
    starts, each model once per process (bot/shared_models.py)."""

    def __init__(self, settings: Settings, library: Library, *, audit: AuditLog | None = None, workers: int = 1,
                 **options: Any) -> None:
        intents = discord.Intents.none()
        intents.guilds = True  # GUILD_CREATE tells us which guilds we are in, so we can leave the wrong ones
        options.setdefault("allowed_mentions", discord.AllowedMentions.none())
        super().__init__(command_prefix=commands.when_mentioned, intents=intents, tree_cls=ImageBotTree,
                         help_command=None, **options)
        # However the bot is started (the entry point, a host embedding it, a test), no log record
        # of this process may hold its token or an interaction token from here on.
        redaction.install([settings.discord_token])
        self.settings = settings
        self.library = library
        self.watcher = RebuildWatcher(library, settings.reload_interval)
        self.audit = audit or AuditLog(settings.audit_log)
        self.limiter = SlidingWindowLimiter(settings.rate_limit.count, settings.rate_limit.seconds)
        self.command_sync = CommandSync(self)
        # One worker by default: queries queue for the model instead of fighting over the CPU cores,
        # and the event loop (gateway heartbeat, other users' deferrals) never waits on them.
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="imagesearch")

    async def run_blocking(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run model, index or image work off the event loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, functools.partial(fn, *args, **kwargs))

    async def setup_hook(self) -> None:
        """Load every extension, then sync the commands (bot/commandsync.py); any failure stops start-up.

        Both extensions are essential, and syncing after a failed load would replace the
        application's commands with an empty set: /imagesearch would vanish from every server
        while the bot looked healthy.
        """
        for name in EXTENSIONS:
            try:
                await self.load_extension(name)
            except commands.ExtensionError as exc:
                log.exception("Failed to load extension %s", name)
                raise StartupError(f"the extension {name} failed to load ({type(exc.__cause__ or exc).__name__}); "
                                   "see the log above") from exc
        try:
            await self.command_sync.sync_all()
        except CommandSyncError as exc:
            raise StartupError(str(exc)) from exc
        self.watcher.start()

    async def on_guild_join(self, guild: discord.Guild) -> None:
        await self.command_sync.sync_joined(guild)

    async def on_ready(self) -> None:
        log.info("Logged in as %s (%s) in %d guild(s)", self.user, getattr(self.user, "id", "?"),
                 len(self.guilds))

    async def close(self) -> None:
        self.watcher.stop()
        try:
            await super().close()
        finally:
            self.executor.shutdown(wait=False, cancel_futures=True)
            await asyncio.to_thread(self.audit.close)   # every queued audit line is on disk
