"""The bot's configuration, parsed once from a mapping (the environment plus `.env`).

Only `bot/__main__.py` reads `os.environ`; everything else receives a `Settings`. Parsing checks
every key before failing, so one start-up attempt reports every mistake at once, in one line,
naming the variables and never echoing their values (a token pasted into the wrong variable must
not end up in a log).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from search_core.errors import ImageSearchError
from search_core.layout import MANIFEST
from search_core.query_threads import MAX_LIMIT as MAX_SEARCH_THREADS

# Discord allows at most 25 select options and 25 embed fields: a page never shows more hits.
HARD_MAX_K = 25
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


ID_HINT = "a number of 15 to 21 digits: right-click the server or channel, Copy ID"


def _describe(entry: str) -> str:
    """Which entry is wrong, quoted only when it is a plain number: a token pasted into the wrong
    variable must never be echoed."""
    if entry.isdigit() and entry.isascii():
        return f"{entry} has {len(entry)} digits"
    return "an entry is not a number"


def _is_discord_id(text: str) -> bool:
    """Snowflakes are 15-21 ASCII digits today; a short number is a typo, not an id."""
    return text.isdigit() and text.isascii() and 15 <= len(text) <= 21


class ConfigError(ImageSearchError):
    """One or more configuration values are missing or invalid; the message names them all."""


# A collection name: what users pick in the command's `collection` option and what the audit log
# records. Letters, digits, '.', '-', '_' and inner spaces, so that it can never hold the separators
# of IMAGESEARCH_COLLECTIONS / IMAGESEARCH_GUILD_COLLECTIONS (, = ; : |); 50 characters leave room
# for rows and years in an autocomplete choice (100 characters).
NAME_PATTERN = re.compile(r"[^\W_](?:[\w. -]{0,48}[\w.-])?")
NAME_RULE = "letters, digits, '.', '-', '_' and inner spaces, at most 50 characters"


def name_from_folder(path: Path) -> str:
    """The name of the one collection given by IMAGESEARCH_COLLECTION: its folder's name, with
    characters a name may not hold replaced by '-' (so any folder works)."""
    name = re.sub(r"[^\w.-]+", "-", path.resolve().name).strip("-._")[:50].strip("-._")
    return name or "collection"


def _safe_to_show(name: str) -> bool:
    """A name that follows NAME_PATTERN is shown in an error; anything else may be a pasted secret."""
    return NAME_PATTERN.fullmatch(name) is not None and len(name) <= 32


@dataclass(frozen=True)
class CollectionSpec:
    """One collection the bot serves: the name users pick and the folder it is read from."""

    name: str
    path: Path

    @property
    def key(self) -> str:
        """Names match case-insensitively: "Maps" typed by a user finds the collection "maps"."""
        return self.name.casefold()


@dataclass(frozen=True)
class RateLimit:
    """At most `count` searches per user in any window of `seconds`."""

    count: int
    seconds: float

    def __str__(self) -> str:
        return f"{self.count}/{self.seconds:g}"


# Page turns count too (issue 7), so 5/60 stopped a researcher on the third page of one search.
DEFAULT_RATE_LIMIT = RateLimit(20, 60.0)


@dataclass(frozen=True)
class Settings:
    # repr=False: a Settings printed in a log line or a traceback never shows the token.
    discord_token: str = field(repr=False)
    # In IMAGESEARCH_COLLECTIONS order; the first is the default where a server may use it.
    collections: tuple[CollectionSpec, ...]
    # A server listed here may search only these collections (the first is its default); any other
    # allowed server may search every collection.
    guild_collections: Mapping[int, tuple[str, ...]] = field(default_factory=dict)
    # Which variable named the collections, for error messages: IMAGESEARCH_COLLECTION(S).
    collections_key: str = "IMAGESEARCH_COLLECTIONS"
    allowed_guilds: frozenset[int] = frozenset()
    # None: every channel of an allowed guild; a set: only these channels (and their threads).
    allowed_channels: frozenset[int] | None = None
    blocklist: Path | None = None
    blocked_concepts: Path | None = None
    hidden: Path | None = None
    audit_log: Path | None = None
    rate_limit: RateLimit = DEFAULT_RATE_LIMIT
    model_name: str | None = None          # None: the model the collection's manifest names
    # A text model aligned with the collections' image model, for prompts in 50+ languages.
    text_model: str | None = None
    device: str = "auto"
    concept_threshold: float | None = None         # None: the moderation policy's default
    image_concept_threshold: float | None = None
    max_k: int = HARD_MAX_K
    dev_guild_id: int | None = None
    log_level: str = "INFO"
    # Seconds between checks for a rebuilt collection (a stat of each manifest.json); 0: never.
    reload_interval: float = 10.0
    # Cores one search may use while no other search runs (search_core/query_threads.py); None:
    # its default (2 where there are 2). 1 on a host shared with other busy processes.
    search_threads: int | None = None

    def collection_names(self, guild_id: int | None) -> tuple[str, ...]:
        """The collections a server may search, its default first."""
        if guild_id is not None and guild_id in self.guild_collections:
            return self.guild_collections[guild_id]
        return tuple(spec.name for spec in self.collections)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Parse and check every key; raise ConfigError naming all the bad ones."""
        p = _Parser(env)
        token = p.token("DISCORD_TOKEN")
        collections_key, collections = p.collections("IMAGESEARCH_COLLECTIONS", "IMAGESEARCH_COLLECTION")
        allowed_guilds = p.ids("IMAGESEARCH_ALLOWED_GUILDS") or frozenset()
        settings = dict(  # noqa: C408 - keyword form reads like the Settings fields
            discord_token=token,
            collections=collections,
            guild_collections=p.guild_collections("IMAGESEARCH_GUILD_COLLECTIONS", collections, allowed_guilds,
                                                  collections_key),
            collections_key=collections_key,
            allowed_guilds=allowed_guilds,
            allowed_channels=p.ids("IMAGESEARCH_ALLOWED_CHANNELS"),
            blocklist=p.readable_file("IMAGESEARCH_BLOCKLIST"),
            blocked_concepts=p.readable_file("IMAGESEARCH_BLOCKED_CONCEPTS"),
            hidden=p.readable_file("IMAGESEARCH_HIDDEN"),
            audit_log=p.writable_file("IMAGESEARCH_AUDIT_LOG"),
            rate_limit=p.rate_limit("IMAGESEARCH_RATE_LIMIT"),
            model_name=p.text("IMAGESEARCH_MODEL"),
            text_model=p.text("IMAGESEARCH_TEXT_MODEL"),
            device=p.device("IMAGESEARCH_DEVICE"),
            concept_threshold=p.threshold("IMAGESEARCH_CONCEPT_THRESHOLD"),
            image_concept_threshold=p.threshold("IMAGESEARCH_IMAGE_CONCEPT_THRESHOLD"),
            max_k=p.int_in("IMAGESEARCH_MAX_K", 1, HARD_MAX_K, default=HARD_MAX_K),
            dev_guild_id=p.one_id("IMAGESEARCH_DEV_GUILD"),
            log_level=p.log_level("IMAGESEARCH_LOG_LEVEL"),
            reload_interval=p.seconds("IMAGESEARCH_RELOAD_INTERVAL", default=10.0),
            search_threads=p.int_in("IMAGESEARCH_SEARCH_THREADS", 1, MAX_SEARCH_THREADS, default=0) or None,  # 0: unset
        )
        dev_guild = settings["dev_guild_id"]
        if dev_guild is not None and dev_guild not in settings["allowed_guilds"]:
            p.bad("IMAGESEARCH_DEV_GUILD", "must be one of IMAGESEARCH_ALLOWED_GUILDS (the bot leaves every "
                                           "other server, so its commands would be synced where it cannot stay)")
        if p.problems:
            raise ConfigError("Configuration error: " + "; ".join(p.problems) + ".")
        return cls(**settings)


class _Parser:
    """Collects one problem per bad key instead of stopping at the first."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.problems: list[str] = []

    def _get(self, key: str) -> str | None:
        value = self.env.get(key)
        if value is None:
            return None
        value = value.strip()
        return value or None

    def bad(self, key: str, why: str) -> None:
        self.problems.append(f"{key} {why}")

    def token(self, key: str) -> str:
        value = self._get(key)
        if value is None:
            self.bad(key, "is required (the bot token from the Discord developer portal)")
            return ""
        if any(c.isspace() for c in value) or not value.isprintable():
            self.bad(key, "is not a valid token (it contains spaces or control characters)")
            return ""
        return value

    def collections(self, key: str, single_key: str) -> tuple[str, tuple[CollectionSpec, ...]]:
        """IMAGESEARCH_COLLECTIONS=name=path,name=path, or the single IMAGESEARCH_COLLECTION (named
        after its folder); returns the variable used and the collections, in order."""
        listed, single = self._get(key), self._get(single_key)
        if listed is not None and single is not None:
            self.bad(single_key, f"and {key} are both set; keep one ({key} for several collections)")
            return key, ()
        if listed is None:
            if single is None:
                self.bad(single_key, "is required (the folder of a collection built with `imagesearch build`), "
                                     f"or {key}=name=folder,name=folder for several")
                return single_key, ()
            path = self._folder(single_key, single, "")
            return single_key, (CollectionSpec(name_from_folder(path), path),)
        specs: list[CollectionSpec] = []
        seen: dict[str, str] = {}
        for number, entry in enumerate((e.strip() for e in listed.split(",")), start=1):
            if not entry:
                continue
            name, sep, folder = (part.strip() for part in entry.partition("="))
            if not sep or not name or not folder:
                self.bad(key, f"entry {number} must look like name=folder (entries separated by commas)")
                continue
            if NAME_PATTERN.fullmatch(name) is None:
                self.bad(key, f"entry {number}: a collection name may hold {NAME_RULE}")
                continue
            if name.casefold() in seen:
                self.bad(key, f"names the collection {name} twice (names are compared ignoring case)")
                continue
            seen[name.casefold()] = name
            specs.append(CollectionSpec(name, self._folder(key, folder, f" ({name})")))
        if not specs and not any(key in problem for problem in self.problems):
            self.bad(key, "lists no collection; write name=folder,name=folder")
        return key, tuple(specs)

    def _folder(self, key: str, value: str, which: str) -> Path:
        path = Path(value).expanduser()
        if not path.is_dir():
            self.bad(key, f"does not name an existing folder{which}")
        elif not (path / MANIFEST).is_file():
            self.bad(key, f"is not a built collection{which} (no {MANIFEST})")
        return path

    def guild_collections(self, key: str, collections: tuple[CollectionSpec, ...], allowed_guilds: frozenset[int],
                          collections_key: str) -> dict[int, tuple[str, ...]]:
        """guild_id:name|name;guild_id:name -> {guild id: collection names, as spelled in the list}."""
        value = self._get(key)
        if value is None:
            return {}
        by_key = {spec.key: spec.name for spec in collections}
        out: dict[int, tuple[str, ...]] = {}
        for number, entry in enumerate((e.strip() for e in value.split(";")), start=1):
            if not entry:
                continue
            guild, sep, names_text = (part.strip() for part in entry.partition(":"))
            names = [n.strip() for n in names_text.split("|")]
            if not sep or not guild or not all(names):
                self.bad(key, f"entry {number} must look like server_id:name|name (entries separated by ';')")
                continue
            if not _is_discord_id(guild):
                self.bad(key, f"entry {number}: {_describe(guild)} ({ID_HINT})")
                continue
            guild_id = int(guild)
            if guild_id in out:
                self.bad(key, f"lists server {guild_id} twice")
                continue
            if guild_id not in allowed_guilds:
                self.bad(key, f"lists server {guild_id}, which is not in IMAGESEARCH_ALLOWED_GUILDS")
            unknown = [n for n in names if n.casefold() not in by_key]
            if unknown and collections:
                shown = ", ".join(n if _safe_to_show(n) else "(a name that is not shown)" for n in unknown)
                self.bad(key, f"entry {number} names a collection that is not in {collections_key}: {shown}")
                continue
            out[guild_id] = tuple(dict.fromkeys(by_key.get(n.casefold(), n) for n in names))
        return out

    def _number(self, key: str) -> float | None:
        """The value as a float (NaN when it is not a number, which every range check refuses);
        None when unset."""
        value = self._get(key)
        if value is None:
            return None
        try:
            return float(value)
        except ValueError:
            return float("nan")

    def seconds(self, key: str, *, default: float) -> float:
        number = self._number(key)
        if number is None:
            return default
        if not 0 <= number <= 86_400:
            self.bad(key, "must be a number of seconds from 0 (off) to 86400, e.g. 10")
            return default
        return number

    def text(self, key: str) -> str | None:
        return self._get(key)

    def ids(self, key: str) -> frozenset[int] | None:
        """A comma-separated list of Discord ids; None when the key is unset or empty."""
        value = self._get(key)
        if value is None:
            return None
        out: set[int] = set()
        for part in value.split(","):
            part = part.strip()
            if not part:
                continue
            if not _is_discord_id(part):
                self.bad(key, f"must be a comma-separated list of Discord ids; {_describe(part)} ({ID_HINT})")
                return None
            out.add(int(part))
        return frozenset(out)

    def one_id(self, key: str) -> int | None:
        value = self._get(key)
        if value is None:
            return None
        if not _is_discord_id(value):
            self.bad(key, f"must be one Discord server id; {_describe(value)} ({ID_HINT})")
            return None
        return int(value)

    def readable_file(self, key: str) -> Path | None:
        value = self._get(key)
        if value is None:
            return None
        path = Path(value).expanduser()
        if not path.is_file():
            self.bad(key, "does not name an existing file")
        elif not os.access(path, os.R_OK):
            self.bad(key, "names a file that cannot be read")
        return path

    def writable_file(self, key: str) -> Path | None:
        value = self._get(key)
        if value is None:
            return None
        path = Path(value).expanduser()
        if path.is_dir():
            self.bad(key, "names a folder, not a file")
        elif path.exists() and not os.access(path, os.W_OK):
            self.bad(key, "names a file that cannot be written")
        elif not path.exists() and not (path.parent.is_dir() and os.access(path.parent, os.W_OK)):
            self.bad(key, "names a file whose folder does not exist or cannot be written")
        return path

    def rate_limit(self, key: str) -> RateLimit:
        value = self._get(key)
        if not value:
            return DEFAULT_RATE_LIMIT
        count, sep, seconds = value.partition("/")
        try:
            limit = RateLimit(int(count), float(seconds))
        except ValueError:
            limit = None
        if not sep or limit is None or limit.count < 1 or not 0 < limit.seconds <= 86_400:
            self.bad(key, "must look like N/SECONDS with N >= 1, e.g. 5/60")
            return DEFAULT_RATE_LIMIT
        return limit

    def device(self, key: str) -> str:
        value = self._get(key) or "auto"
        if value not in ("auto", "cpu", "cuda", "mps") and not value.startswith("cuda:"):
            self.bad(key, "must be auto, cpu, cuda, cuda:N or mps")
        return value

    def threshold(self, key: str) -> float | None:
        number = self._number(key)
        if number is None:
            return None
        if not -1.0 <= number <= 1.0:
            self.bad(key, "must be a cosine similarity between -1 and 1, e.g. 0.25")
            return None
        return number

    def int_in(self, key: str, low: int, high: int, *, default: int) -> int:
        value = self._get(key)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            number = low - 1
        if not low <= number <= high:
            self.bad(key, f"must be a whole number from {low} to {high}")
            return default
        return number

    def log_level(self, key: str) -> str:
        value = (self._get(key) or "INFO").upper()
        if value not in LOG_LEVELS:
            self.bad(key, "must be one of " + ", ".join(LOG_LEVELS))
            return "INFO"
        return value
