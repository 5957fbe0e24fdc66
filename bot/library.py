"""The collections the bot serves (IMAGESEARCH_COLLECTIONS), each as its current edition.

An `Edition` is one build of a named collection, opened: its search service and the moderation
policy of its model. A query holds the edition it started with until its answer is posted, so a
rebuild swapped in meanwhile (bot/watch.py) never mixes two builds in one answer; a pager keeps
only the name and version and asks `Library.edition_for` on every press, which answers
"search again" once the collection has been rebuilt.

Which server may search which collection (IMAGESEARCH_GUILD_COLLECTIONS) is decided here too, in
one place for the command, its autocomplete and the pager.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bot.errors import Refusal
from bot.watch import Stamp, build_version
from search_core.errors import CollectionError

if TYPE_CHECKING:
    from bot.settings import CollectionSpec
    from bot.shared_models import SharedModels
    from search_core.moderation import ModerationPolicy
    from search_core.search import SearchService

log = logging.getLogger(__name__)

# Discord's limit on an autocomplete choice's name.
CHOICE_NAME_LIMIT = 100

UNKNOWN_COLLECTION = "There is no collection by that name here. Pick one from the list the command offers."
STALE_RESULTS = "These results are from an older version of the collection; search again."


@dataclass(frozen=True)
class Edition:
    """One opened build of a named collection: what a query runs against from start to last page."""

    spec: CollectionSpec
    version: str                         # build id (bot/watch.py): changes with every rebuild
    service: SearchService
    policy: ModerationPolicy | None      # embedded with this collection's own model
    stamp: Stamp | None = None           # manifest.json's identity when opened (bot/watch.py)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def rows(self) -> int:
        return self.service.collection.rows

    @property
    def years(self) -> tuple[int, int] | None:
        """First and last known year, or None when the collection has no years."""
        years = self.service.collection.years
        if years is None or len(years) == 0:
            return None
        return int(years[0]), int(years[-1])

    @property
    def year_span(self) -> str:
        """`1790–1910`, one year alone, or '' without years."""
        if self.years is None:
            return ""
        first, last = self.years
        return str(first) if first == last else f"{first}–{last}"

    @property
    def label(self) -> str:
        """What the autocomplete shows: name, rows and years, e.g. `maps · 12,345 images · 1790–1910`."""
        parts = [self.name, f"{self.rows:,} images", self.year_span]
        return " · ".join(p for p in parts if p)[:CHOICE_NAME_LIMIT]

    def matches(self, typed: str) -> bool:
        """Whether what a user typed in the autocomplete names this collection or its years."""
        typed = typed.strip().casefold()
        return typed in self.spec.key or typed in self.year_span


def verify(path: Path) -> None:
    """Refuse a folder whose files, manifest or index do not match (integrity.verify_collection).

    Quick mode: everything but the image Arrow files is hashed (4-7 s for a million rows;
    BENCHMARKS.md). It runs before the model loads and before the index is parsed, so damaged
    index bytes are never read into FAISS; at start-up and for every rebuilt folder alike.
    """
    from search_core.integrity import verify_collection

    report = verify_collection(path, quick=True)
    if report.problems:
        more = f" (and {len(report.problems) - 1} more)" if len(report.problems) > 1 else ""
        raise CollectionError(f"{path} does not match its manifest: {report.problems[0]}{more}; "
                              f"`imagesearch verify {path}` lists every problem; rebuild the collection or "
                              "restore it from a copy.")


def open_edition(spec: CollectionSpec, models: SharedModels, hidden_files: Iterable[str] = ()) -> Edition:
    """Verify and open the collection at `spec.path` with its model from `models` (loaded once per
    model). Raises CollectionError for the folder, other ImageSearchErrors for its model."""
    from search_core.collection import Collection
    from search_core.search import SearchService

    stamp = Stamp.of(spec.path)      # before opening: see edition_of
    verify(spec.path)
    collection = Collection.open(spec.path)
    shared = models.get(collection.manifest.model)
    service = SearchService(collection, shared.encoder, hidden_files=hidden_files, text_model=shared.text_model)
    edition = edition_of(spec, service, shared.policy, stamp=stamp)
    log.info("collection %s: %d rows, build %s, model %s%s", spec.name, collection.rows, edition.version,
             getattr(shared.encoder, "model_name", "?"),
             f", prompts by {shared.text_model.model_name}" if shared.text_model is not None else "")
    return edition


def edition_of(spec: CollectionSpec, service: SearchService, policy: ModerationPolicy | None = None, *,
               stamp: Stamp | None = None) -> Edition:
    """An edition around an opened service (open_edition; tests and hosts that open their own).

    Pass the stamp taken before the folder was opened: if a rebuild replaced the folder in between,
    the edition is labelled older than its content and the next check opens it again, which costs
    a reload and never serves a build under a newer label than its own.
    """
    stamp = stamp if stamp is not None else Stamp.of(spec.path)
    return Edition(spec=spec, version=build_version(spec.path, stamp), service=service, policy=policy, stamp=stamp)


class Library:
    """The editions being served, by name, and which server may search which of them.

    Read and swapped on the event loop only (no lock): a swap is one dict assignment between
    two awaits, so every query sees either the old edition or the new one, whole.
    """

    def __init__(self, editions: Iterable[Edition], guild_collections: Mapping[int, tuple[str, ...]] | None = None,
                 *, opener: Callable[[CollectionSpec], Edition] | None = None) -> None:
        self._editions: dict[str, Edition] = {}
        for edition in editions:
            if edition.spec.key in self._editions:
                raise ValueError(f"two collections are named {edition.name}")
            self._editions[edition.spec.key] = edition
        self.guild_collections = {guild: tuple(n.casefold() for n in names)
                                  for guild, names in (guild_collections or {}).items()}
        # How bot/watch.py opens a rebuilt folder; None: this library is never reloaded.
        self.opener = opener

    def __iter__(self) -> Iterator[Edition]:
        """The current editions, in IMAGESEARCH_COLLECTIONS order (a copy: a swap may follow)."""
        return iter(list(self._editions.values()))

    def __len__(self) -> int:
        return len(self._editions)

    def current(self, name: str) -> Edition:
        return self._editions[name.casefold()]

    def offered(self, guild_id: int | None) -> list[Edition]:
        """The editions a server may search, its default first."""
        keys = self.guild_collections.get(guild_id) if guild_id is not None else None
        if keys is None:
            return list(self._editions.values())
        return [self._editions[key] for key in keys if key in self._editions]

    def resolve(self, guild_id: int | None, requested: str | None) -> Edition:
        """The edition a search in this server runs against: the one named, else the server's
        default. A name the server may not use gets the same refusal as a name that does not
        exist, so a restricted collection's name is not confirmed to other servers."""
        offered = self.offered(guild_id)
        if requested is None or not requested.strip():
            if not offered:
                raise Refusal(UNKNOWN_COLLECTION, "no_collection")
            return offered[0]
        key = requested.strip().casefold()
        for edition in offered:
            if edition.spec.key == key:
                return edition
        raise Refusal(UNKNOWN_COLLECTION, "unknown_collection")

    def edition_for(self, name: str, version: str) -> Edition:
        """The current edition of `name` if it is still `version`; a private "search again" if the
        collection was rebuilt since (rows, ranks and filters of the old build mean nothing now)."""
        edition = self._editions.get(name.casefold())
        if edition is None or edition.version != version:
            raise Refusal(STALE_RESULTS, "stale_results")
        return edition

    def swap(self, edition: Edition) -> Edition:
        """Serve `edition` from now on; returns the one it replaces. In-flight queries keep theirs."""
        previous = self._editions[edition.spec.key]
        self._editions[edition.spec.key] = edition
        return previous
