"""The per-user sliding-window limiter."""

from __future__ import annotations

from bot.ratelimit import SlidingWindowLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_allows_count_then_refuses_with_retry_after() -> None:
    """N searches pass, the N+1th is refused with the time until the oldest leaves the window."""
    clock = Clock()
    limiter = SlidingWindowLimiter(3, 60, clock=clock)
    for _ in range(3):
        assert limiter.hit(1).allowed
        clock.now += 5
    verdict = limiter.hit(1)
    assert not verdict.allowed
    assert verdict.retry_after == 45.0


def test_window_slides_rather_than_resets() -> None:
    """Searches at t=0,50 and limit 2/60: at t=61 one slot is free again, not two."""
    clock = Clock()
    limiter = SlidingWindowLimiter(2, 60, clock=clock)
    assert limiter.hit(1).allowed
    clock.now += 50
    assert limiter.hit(1).allowed
    clock.now += 11
    assert limiter.hit(1).allowed
    assert not limiter.hit(1).allowed


def test_refused_hits_do_not_extend_the_wait() -> None:
    """Hammering while limited does not push the next allowed search further away."""
    clock = Clock()
    limiter = SlidingWindowLimiter(1, 10, clock=clock)
    assert limiter.hit(1).allowed
    for _ in range(5):
        clock.now += 1
        assert not limiter.hit(1).allowed
    clock.now += 5
    assert limiter.hit(1).allowed


def test_users_are_independent() -> None:
    """One user at the limit does not slow another."""
    limiter = SlidingWindowLimiter(1, 60, clock=Clock())
    assert limiter.hit(1).allowed
    assert not limiter.hit(1).allowed
    assert limiter.hit(2).allowed


def test_idle_users_are_forgotten() -> None:
    """A long-running bot does not keep a window for every user it ever saw."""
    clock = Clock()
    limiter = SlidingWindowLimiter(1, 10, clock=clock)
    for user in range(2000):
        limiter.hit(user)
    clock.now += 11
    limiter.hit(99999)
    assert len(limiter._hits) < 10
