"""How many cores one query's FAISS scan may use: two when it runs alone, one when it does not.

Why: at 1M rows the inverted lists a text prompt needs (nprobe 160 of 4,000) take about 1 ms to
scan on one core, half the issue's 2 ms budget for a whole search. FAISS can split one query's
lists between OpenMP threads (``IndexIVF.parallel_mode = 1``): 2 threads took the scan from
p50 1.15 / p95 1.57 ms to 0.60 / 0.68 ms on this 2-core machine (1M hard rows, quiet).

The catch is OpenMP's end-of-search barrier: the query waits for its slowest thread, and a
thread that finds its core taken waits for a time slice. Beside one busy process the same scan
went to p95 4.6 ms, p99 30 ms, against 1.0 ms on one thread. Two searches of this process at
once would do that to each other, and so would a query being encoded (torch uses every core), so
a search gets the extra thread only while nothing else of the kind runs in the process (all
collections share the cores). Other busy processes cannot be seen
from here: on a shared host set IMAGESEARCH_SEARCH_THREADS=1 (bot) or call ``set_limit(1)``.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from typing import Any

# More threads were not measured (this machine has 2 cores): 2 is the default wherever there are 2.
DEFAULT_LIMIT = 2
MAX_LIMIT = 64
# Inverted lists per thread at the least: fewer are scanned faster than a thread team starts, and
# a second thread that only waits still risks the barrier's stall (1M easy rows probe 1 list:
# 2 threads took p95 0.73 ms quiet, as 1 did, but 8.0 ms against 1.0 beside a busy process).
MIN_LISTS_PER_THREAD = 8


def available_cores() -> int:
    """Cores this process may run on (its affinity mask, which containers narrow), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):     # not on Linux
        return max(1, os.cpu_count() or 1)


class QueryThreads:
    """Hands each running search its thread count; one per process (`QUERY_THREADS`)."""

    def __init__(self, limit: int | None = None) -> None:
        self._lock = threading.Lock()
        self._running = 0
        self.limit = min(DEFAULT_LIMIT, available_cores()) if limit is None else _checked(limit)

    def set_limit(self, limit: int) -> None:
        """The most threads one search may use; 1 turns intra-query parallelism off."""
        self.limit = _checked(limit)

    @contextlib.contextmanager
    def busy(self) -> Iterator[bool]:
        """Mark CPU-heavy work of this process (a search, or encoding a query) while it runs; yields
        whether nothing else was running when it started. A search meanwhile keeps to one thread."""
        with self._lock:
            self._running += 1
            alone = self._running == 1
        try:
            yield alone
        finally:
            with self._lock:
                self._running -= 1

    @contextlib.contextmanager
    def claim(self, lists: int = 0) -> Iterator[int]:
        """Run one search's FAISS call, which scans `lists` inverted lists (0: not an IVF search),
        with up to `limit` OpenMP threads, at least MIN_LISTS_PER_THREAD lists each, when no other
        search of this process is running, else with one; yields the count. OpenMP's thread count
        is per calling thread, so concurrent searches each get their own."""
        import faiss

        with self.busy() as alone:
            threads = max(1, min(self.limit, lists // MIN_LISTS_PER_THREAD)) if alone else 1
            previous = faiss.omp_get_max_threads()
            faiss.omp_set_num_threads(threads)
            try:
                yield threads
            finally:
                faiss.omp_set_num_threads(previous)


def split_lists_between_threads(index: Any) -> None:
    """Let an IVF index share one query's inverted lists between threads (no-op for others).

    Results are the same as with FAISS's default mode, which splits a batch by query and so leaves
    a single query on one thread whatever the thread count.
    """
    import faiss

    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None:
        ivf.parallel_mode = 1


def _checked(limit: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"search threads must be a whole number from 1 to {MAX_LIMIT}, not {limit!r}")
    return limit


QUERY_THREADS = QueryThreads()
