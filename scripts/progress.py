"""One progress display per build stage (scan, embed, index, write), with counts and rates.

On a terminal each stage is a tqdm bar on stderr that ends as one finished line. Anywhere else (a
pipe, a log file, ``--no-progress``) a stage prints one line when it ends, so a log gets one line
per stage instead of a stream of carriage-return redraws. The libraries' own bars and notices
(datasets' "Generating train split", "Flattening the indices", "storing images", "Saving the
dataset") are silenced for the whole build by `quiet_libraries`. Downloads keep their bars: the
Hub's model download on first use shows bytes and speed, which a stage count cannot.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from tqdm import tqdm

TICK_SECONDS = 1.0   # a live bar's clock moves even while one long call (load, FAISS train) runs


def live_bars(progress: bool) -> bool:
    """Bars only where someone watches them: progress asked for and stderr is a terminal with a
    width (tqdm draws nothing at all on a terminal that reports 0 columns)."""
    if not (progress and sys.stderr.isatty()):
        return False
    try:
        return os.get_terminal_size(sys.stderr.fileno()).columns > 0
    except (OSError, ValueError):
        return False


class Stage:
    """A running stage: call `advance(n)` as work is done; `note` is added to its final line."""

    def __init__(self, name: str, unit: str, total: int | None, initial: int, live: bool) -> None:
        self.name, self.unit = name, unit
        self.done = self.initial = initial
        self.note = ""
        self._started = time.perf_counter()
        self._bar = None
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        if live:
            self._bar = tqdm(total=total, initial=initial, desc=name, unit=f" {unit}s", file=sys.stderr,
                             dynamic_ncols=True, leave=True)
            self._ticker = threading.Thread(target=self._tick, name=f"progress-{name}", daemon=True)
            self._ticker.start()

    def advance(self, n: int) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)

    def set_note(self, note: str) -> None:
        """Change the note; a live bar shows it at its next redraw (the final line always has it)."""
        self.note = note
        if self._bar is not None:
            self._bar.set_postfix_str(note, refresh=False)

    def _tick(self) -> None:
        while not self._stop.wait(TICK_SECONDS):
            self._bar.refresh()

    def summary(self) -> str:
        """`embed: 24 images in 3.1 s (7.7 images/s; 8 resumed)`: counts this run's work only."""
        seconds = time.perf_counter() - self._started
        work = self.done - self.initial
        rate = f"{work / seconds:,.1f} {self.unit}s/s" if seconds > 0 and work else "nothing to do"
        note = f"; {self.note}" if self.note else ""
        return f"{self.name}: {self.done:,} {self.unit}s in {seconds:.1f} s ({rate}{note})"

    def close(self, finished: bool) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
        if self._bar is not None:
            if finished and self.note:
                self._bar.set_postfix_str(self.note, refresh=False)
            self._bar.close()
        elif finished:
            print(self.summary(), file=sys.stderr, flush=True)


@contextmanager
def stage(name: str, unit: str, *, live: bool, total: int | None = None, initial: int = 0) -> Iterator[Stage]:
    """Show one stage; a stage that raises prints no summary (the error line says what happened)."""
    current = Stage(name, unit, total, initial, live)
    finished = False
    try:
        yield current
        finished = True
    finally:
        current.close(finished)


@contextmanager
def quiet_libraries() -> Iterator[None]:
    """Silence datasets' progress bars and its notices below errors; put back the caller's settings.

    Also a decorator (`@quiet_libraries()`), as every `contextmanager` is.
    """
    import datasets
    from datasets.utils import logging as datasets_logging

    bars_were_on = datasets.is_progress_bar_enabled()
    verbosity = datasets_logging.get_verbosity()
    datasets.disable_progress_bars()
    datasets_logging.set_verbosity_error()
    try:
        yield
    finally:
        datasets_logging.set_verbosity(verbosity)
        if bars_were_on:
            datasets.enable_progress_bars()
