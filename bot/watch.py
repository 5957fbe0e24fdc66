"""Pick up a rebuilt collection between queries, without a restart (issue 9, item 4).

`imagesearch build` replaces a collection folder atomically: the new folder is renamed into place
and the old one renamed away, then deleted. Every IMAGESEARCH_RELOAD_INTERVAL seconds the watcher
stats each collection's manifest.json (microseconds). Another file identity (device, inode, size,
modification time) means the folder may have been replaced: its build version is read, and when
that changed the new folder is opened in a thread of its own, checked as at start-up
(`Collection.open`, the model probe), and swapped in on the event loop, between two queries.

Queries in flight keep the edition they started with until they answer. Its index, embeddings and
Arrow files are memory-mapped, and on Linux a mapping of a deleted file stays valid until it is
unmapped (the inode lives while it is mapped), so the build deleting the old folder does not
disturb them; the old build's disk space is freed when the last of them finishes.

A replacement that cannot be opened (a hand copy still in progress, a corrupt index, a model that
does not load or does not match) is ignored with one log line and the old build stays in service.
It is tried again when its manifest.json changes, or after RETRY_SECONDS.

Polling rather than inotify: one stat per collection per interval costs nothing, needs no extra
dependency, and works on network file systems, where inotify sees no changes made by other hosts.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from discord.ext import tasks

from search_core.errors import ImageSearchError
from search_core.layout import MANIFEST

if TYPE_CHECKING:
    from bot.library import Edition, Library

log = logging.getLogger(__name__)

# A folder that failed to open is tried again after this long even if its manifest is unchanged
# (a model that failed to load for a passing reason, files copied in after the manifest).
RETRY_SECONDS = 300.0


@dataclass(frozen=True)
class Stamp:
    """The identity of a collection's manifest.json: a rebuild renames a new file into place."""

    device: int
    inode: int
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, folder: Path) -> Stamp | None:
        """None when there is no manifest.json (between a build's two renames, or a folder gone)."""
        try:
            st = os.stat(Path(folder) / MANIFEST)
        except OSError:
            return None
        return cls(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def build_version(folder: Path, stamp: Stamp | None) -> str:
    """The build a folder holds: the manifest's `build_id` (new for every build, incremental ones
    included); for collections built before it existed, `built_at` (to the second) and the
    manifest's file identity, which a rebuild renamed into place always changes."""
    try:
        raw = json.loads((Path(folder) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raw = {}
    raw = raw if isinstance(raw, dict) else {}
    if raw.get("build_id"):
        return str(raw["build_id"])
    identity = f"{stamp.inode:x}.{stamp.mtime_ns:x}" if stamp is not None else "unknown"
    return f"{raw.get('built_at', 'unknown')}/{identity}"


@dataclass
class _Failure:
    stamp: Stamp | None
    version: str
    at: float


class RebuildWatcher:
    """Swaps rebuilt collections into a Library; runs as a discord.ext.tasks loop."""

    def __init__(self, library: Library, interval: float) -> None:
        self.library = library
        self.interval = interval
        self._failed: dict[str, _Failure] = {}
        self._missing: set[str] = set()
        self.loop = tasks.loop(seconds=interval)(self.check)

    def start(self) -> None:
        if self.library.opener is not None and self.interval > 0:
            self.loop.start()

    def stop(self) -> None:
        self.loop.cancel()

    async def check(self) -> list[str]:
        """One round: the names of the collections swapped. Never raises: a bot that cannot reload
        keeps serving what it has."""
        swapped = []
        for edition in self.library:
            try:
                if await self._check_one(edition):
                    swapped.append(edition.name)
            except Exception:
                log.exception("collection %s: the check for a rebuild failed; keeping build %s",
                              edition.name, edition.version)
        return swapped

    async def _check_one(self, edition: Edition) -> bool:
        folder = edition.spec.path
        stamp = Stamp.of(folder)
        if stamp is None:
            if edition.name not in self._missing:
                self._missing.add(edition.name)
                log.info("collection %s: %s is missing (a build may be replacing it); keeping build %s",
                         edition.name, MANIFEST, edition.version)
            return False
        self._missing.discard(edition.name)
        if stamp == edition.stamp:
            return False
        version = build_version(folder, stamp)
        if version == edition.version:          # the same build, its manifest touched or copied
            self.library.swap(dataclasses.replace(edition, stamp=stamp))
            return False
        failed = self._failed.get(edition.name)
        if (failed is not None and failed.stamp == stamp and failed.version == version
                and time.monotonic() - failed.at < RETRY_SECONDS):
            return False
        opener = self.library.opener
        assert opener is not None
        try:
            fresh = await asyncio.to_thread(opener, edition.spec)
        except ImageSearchError as exc:      # what opening a broken folder raises: one line
            self._failed[edition.name] = _Failure(stamp, version, time.monotonic())
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            log.warning("collection %s: ignoring the replacement build %s (%s); keeping build %s",
                        edition.name, version, reason, edition.version)
            return False
        except Exception:                    # a bug: the traceback, once per replacement
            self._failed[edition.name] = _Failure(stamp, version, time.monotonic())
            log.exception("collection %s: opening the replacement build %s failed; keeping build %s",
                          edition.name, version, edition.version)
            return False
        self._failed.pop(edition.name, None)
        if self.library.current(edition.name) is not edition:   # another check swapped it meanwhile
            return False
        self.library.swap(fresh)
        log.info("collection %s: switched from build %s to build %s (%d rows); queries in flight finish on "
                 "the old build", edition.name, edition.version, fresh.version, fresh.rows)
        return True
