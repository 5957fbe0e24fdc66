"""The bot's one rate-limit policy (`charge`), over a per-user sliding-window limiter.

Sliding rather than fixed windows: a fixed window lets a user fire 2N searches across a window
boundary; here any span of `seconds` holds at most `count` accepted searches. Memory is
`count` timestamps per active user, and idle users are forgotten.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bot.errors import Refusal

if TYPE_CHECKING:
    import discord

    from bot.client import ImageBot


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    retry_after: float  # seconds until the next search would be accepted; 0.0 when allowed


class SlidingWindowLimiter:
    """`count` hits per `seconds` per key. Not thread-safe: call it from the event loop only."""

    def __init__(self, count: int, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        if count < 1 or seconds <= 0:
            raise ValueError("count must be >= 1 and seconds > 0")
        self.count = count
        self.seconds = seconds
        self._clock = clock
        self._hits: dict[int, deque[float]] = {}

    def hit(self, key: int) -> Verdict:
        """Record a search for `key` if the window has room; a refused hit is not recorded."""
        now = self._clock()
        window = self._hits.setdefault(key, deque())
        while window and window[0] <= now - self.seconds:
            window.popleft()
        if len(window) >= self.count:
            return Verdict(False, window[0] + self.seconds - now)
        window.append(now)
        self._forget_idle(now)
        return Verdict(True, 0.0)

    def _forget_idle(self, now: float) -> None:
        # Cheap amortised sweep so a long-running bot does not keep every user it ever saw.
        if len(self._hits) < 1024:
            return
        for key in [k for k, w in self._hits.items() if not w or w[-1] <= now - self.seconds]:
            del self._hits[key]


def rate_limit_message(retry_after: float) -> str:
    return f"You're searching too fast. Try again in {max(1, round(retry_after))} seconds."


def charge(bot: ImageBot, interaction: discord.Interaction, action: str, **audit: Any) -> None:
    """Count one search or page against the user's IMAGESEARCH_RATE_LIMIT, or refuse it.

    The one rate-limit policy of the bot. Every action that runs a search or renders a page calls
    this first, before it defers or queues work on the model thread: /imagesearch, Previous/Next,
    "more like this", and any button added later (`charge(bot, interaction, "<action>")` as the
    first thing its callback does once it knows it will do work). All actions share one budget per
    user: one user holding several pagers cannot keep the single search worker busy for everyone.

    Over the limit it raises `Refusal`; let it propagate. The interaction is not acknowledged yet,
    so the tree's or the view's `on_error` answers with a private message of its own, and the
    refusal is written to the audit log here (`action` is its event name; `audit` adds fields,
    e.g. `prompt=`, reduced to a length and keyed hash by the audit log).
    """
    verdict = bot.limiter.hit(interaction.user.id)
    if verdict.allowed:
        return
    bot.audit.record(action, allowed=False, reason="rate_limited", user_id=interaction.user.id,
                     guild_id=interaction.guild_id, channel_id=interaction.channel_id, **audit)
    raise Refusal(rate_limit_message(verdict.retry_after), "rate_limited")
