"""The collection on disk: file names and the manifest. The one contract between `scripts` (writer)
and `search_core` (reader).

```
collection/
  manifest.json   Manifest below
  dataset/        datasets.Dataset.save_to_disk: one row per image, rows sorted by year
                  (known years ascending, unknown years last) so a year range is a row range
  embeddings.npy  float32 [rows, dim], L2-normalised; row i is dataset row i
  index.faiss     FAISS index, metric inner product, ids are dataset row numbers
  skipped.jsonl   one {"file": ..., "reason": ...} per source file that was not embedded
  groups.npy      int32 [rows]: near-duplicate group of each row, the group's smallest row
                  (optional: a collection without it has every row in a group of its own)
  files.arrow     Arrow IPC table, row i = dataset row i: where each row's image came from and
                  how it looked then (key, size, mtime_ns, digest), what the next build compares
                  to re-embed only new and changed images (optional: collections built before
                  incremental builds lack it, and their next build starts from scratch)
```

``manifest.json`` lists the sha256 of every other file (``checksums``, keyed by the path inside
the collection, e.g. ``dataset/data-00000-of-00001.arrow``), and under its own name the sha256 of
its own content without that entry (`manifest_digest`), so that an edited field is caught too.
`Manifest.write` adds that entry: write the manifest only through it. `imagesearch verify`
(search_core/integrity.py) checks them.

Dataset columns: ``image`` (datasets ``Image()``), ``file_name`` (always), ``year``, ``title``,
``book_id``, ``volume``, ``page``, ``image_number`` (None where unknown), plus any other scalar
columns the source had. With ``storage`` "copy" (the default) the image column holds each image's
bytes, so the folder is self-contained; with "reference" it is a string column holding a path, relative
to the manifest's ``image_root``, or an http(s) URL (search_core/references.py reads them).
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

FORMAT_VERSION = 1

MANIFEST = "manifest.json"
DATASET_DIR = "dataset"
EMBEDDINGS = "embeddings.npy"
INDEX = "index.faiss"
SKIPPED = "skipped.jsonl"
GROUPS = "groups.npy"
FILES = "files.arrow"

# How a collection holds its images: their bytes inside dataset/, or where to read them.
STORAGE_COPY = "copy"
STORAGE_REFERENCE = "reference"
STORAGES = (STORAGE_COPY, STORAGE_REFERENCE)

# Encoded at build time and stored in the manifest: at open, the same text encoded by the
# model in use must give (nearly) the same vector, which catches a different model even when
# two models share a name or a path.
MODEL_PROBE_TEXT = "an illustration from a book"
MODEL_PROBE_MIN_COSINE = 0.98

METADATA_COLUMNS = ("file_name", "year", "title", "book_id", "volume", "page", "image_number")


@dataclass(frozen=True)
class IndexInfo:
    """What index was built and how well it does against exact search.

    Recall is measured at build time against exact search, after search_core's exact re-rank,
    for two kinds of query: image-like (rows of the collection, each not counting itself) and
    text (the shipped probe prompts encoded with the collection's model), which sit apart from
    the images (the modality gap) and need a deeper search. Manifests older than the text
    figure read as None.
    """

    spec: str                          # FAISS factory string, e.g. "Flat" or "IVF1024,SQ8"
    params: dict[str, Any] = field(default_factory=dict)   # search-time params, e.g. {"nprobe": 16}
    recall_at_10: float | None = None  # image-like queries; None for exact
    text_recall_at_10: float | None = None   # probe prompts; None for exact (or an older build)
    rerank: int | None = None          # candidates re-ranked exactly per 10 hits; None: the default
    build_seconds: float | None = None   # training, adding and tuning, wall clock


@dataclass(frozen=True)
class DuplicateInfo:
    """How the build grouped near-duplicates (scripts/grouping.py) and what it found."""

    threshold: float           # cosine at or above which two rows are near-identical
    groups: int                # distinct groups, singletons included
    grouped_rows: int          # rows that have at least one near-identical row
    largest: int               # rows in the largest group


@dataclass(frozen=True)
class MatchScale:
    """How strong a best hit usually is: best scores of the shipped probe prompts (search_core/probes.py).

    A text query whose best hit scores below ``weak_below`` (the ``weak_percentile``-th percentile of
    these) is marked a weak match (search_core/weak_match.py).
    """

    probes: int                          # prompts encoded
    percentiles: dict[str, float]        # "5", "10", "25", "50", "75", "90", "95" -> best score
    weak_percentile: int
    weak_below: float


@dataclass(frozen=True)
class ImageRoot:
    """The folder a referenced collection's image paths are relative to, as the build saw it.

    Both spellings are kept so either move can be followed: ``relative`` (to the collection
    folder) still holds when the collection and its images move together, ``absolute`` when only
    the collection moves. search_core/references.py tries them (after any IMAGESEARCH_IMAGE_ROOT).
    """

    absolute: str
    relative: str | None = None    # None where no relative path exists (another drive)


@dataclass(frozen=True)
class BuildChanges:
    """What one build did to the rows: from scratch, or incremental against the collection it replaced."""

    incremental: bool
    added: int = 0             # rows embedded from files the old collection did not have
    changed: int = 0           # rows embedded again because their file changed
    removed: int = 0           # old rows dropped: their file is gone, or no longer reads
    kept: int = 0              # old rows whose vectors were reused as they were


@dataclass(frozen=True)
class Manifest:
    format_version: int
    model: str                 # name or path the collection was embedded with
    embedding_dim: int
    metric: str                # always "ip": cosine on normalised vectors
    rows: int
    index: IndexInfo
    source: str
    built_at: str              # ISO 8601, UTC
    model_probe: list[float]   # MODEL_PROBE_TEXT encoded by the build's model
    precision: str = "fp32"    # how the images were embedded (fp32, bf16, fp16, int8; "source": not by us)
    skipped: int = 0
    embeddings_column: str | None = None   # the vectors came from this column of the source
    checksums: dict[str, str] = field(default_factory=dict)  # file name -> sha256 hex
    duplicates: DuplicateInfo | None = None    # None: built before grouping existed (no groups.npy)
    match_scale: MatchScale | None = None      # None: no weak-match marking
    build_id: str | None = None  # new for every build, incremental ones too (None: built before it existed)
    build_seconds: float | None = None         # wall clock of the whole build
    storage: str = STORAGE_COPY                # STORAGES: image bytes inside, or references to the source
    image_root: ImageRoot | None = None        # with storage "reference" and local files
    changes: BuildChanges | None = None        # None: built before incremental builds existed

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        data = dict(data)
        data["index"] = IndexInfo(**data["index"])
        if data.get("duplicates") is not None:
            data["duplicates"] = DuplicateInfo(**data["duplicates"])
        if data.get("match_scale") is not None:
            data["match_scale"] = MatchScale(**data["match_scale"])
        if data.get("image_root") is not None:
            data["image_root"] = ImageRoot(**data["image_root"])
        if data.get("changes") is not None:
            data["changes"] = BuildChanges(**data["changes"])
        if data.get("storage", STORAGE_COPY) not in STORAGES:
            raise ValueError(f"unknown image storage {data['storage']!r} (expected one of {', '.join(STORAGES)})")
        return cls(**data)

    def write(self, folder: Path) -> None:
        """Write manifest.json, its own checksum (`manifest_digest`) added to `checksums`."""
        data = asdict(self)
        data["checksums"] = {**data["checksums"], MANIFEST: manifest_digest(data)}
        (Path(folder) / MANIFEST).write_text(json.dumps(data, indent=2), encoding="utf-8")

    @classmethod
    def read(cls, folder: Path) -> Manifest:
        """Read and parse; raises FileNotFoundError, ValueError (bad JSON) or TypeError/KeyError."""
        return cls.from_dict(json.loads((Path(folder) / MANIFEST).read_text(encoding="utf-8")))


def new_build_id() -> str:
    """A build's id: its UTC time and 8 random hex digits; two builds in the same second still differ
    (the bot compares ids to notice a rebuilt collection, bot/watch.py)."""
    return f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}"


def manifest_digest(data: dict[str, Any]) -> str:
    """sha256 of a manifest's JSON content, leaving out its own entry in `checksums`.

    Taken over the JSON as written (canonical: sorted keys, no spaces), not over a `Manifest`,
    so that a field added to Manifest later with a default does not invalidate older manifests.
    """
    checksums = data.get("checksums")
    if isinstance(checksums, dict):
        data = {**data, "checksums": {k: v for k, v in checksums.items() if k != MANIFEST}}
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
