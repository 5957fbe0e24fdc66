"""What a collection is, in one look: the facts `imagesearch info` prints, read without the model.

Everything comes from the manifest, skipped.jsonl, the year column and a walk of the folder's file
sizes; opening is `Collection.open` (memory-mapped, no hashing), so a broken collection gives the
same one-sentence CollectionError as everywhere else.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from search_core import layout
from search_core.collection import Collection
from search_core.layout import BuildChanges, DuplicateInfo, IndexInfo

SKIPPED_LISTED = 5


@dataclass(frozen=True)
class ImageStorage:
    """How the collection holds its images, and for references whether their folder is there now."""

    mode: str                          # layout.STORAGES
    root: str | None = None            # where referenced images are read from now
    root_recorded: str | None = None   # where the build found them
    root_found: bool | None = None     # None for copied images


@dataclass(frozen=True)
class YearRange:
    first: int | None                  # None: no row has a known year
    last: int | None
    unknown: int                       # rows without a year


@dataclass(frozen=True)
class WeakMatchCut:
    below: float                       # a text query whose best hit scores lower is a weak match
    percentile: int
    probes: int


@dataclass(frozen=True)
class CollectionInfo:
    path: str
    rows: int
    model: str
    embedding_dim: int
    precision: str
    index: IndexInfo
    text_recall_at_10: float | None    # recall@10 of the probe prompts, where the build measured it
    source: str
    built_at: str
    build_seconds: float | None
    build_id: str | None
    changes: BuildChanges | None
    images: ImageStorage
    disk_bytes: int
    skipped: int
    skipped_first: list[dict[str, str]] = field(default_factory=list)   # {"file", "reason"}
    years: YearRange | None = None     # None: the collection has no year column
    duplicates: DuplicateInfo | None = None
    weak_match: WeakMatchCut | None = None


def collection_info(path: str | Path, *, image_roots: list[Path] | None = None) -> CollectionInfo:
    """Open `path` and gather its facts; raises CollectionError for a missing or broken collection."""
    collection = Collection.open(path, image_roots=image_roots)
    m = collection.manifest
    skipped_first = _first_skipped(collection.path)
    return CollectionInfo(
        path=str(collection.path), rows=m.rows, model=m.model, embedding_dim=m.embedding_dim,
        precision=m.precision, index=m.index, text_recall_at_10=_text_recall(m.index), source=m.source,
        built_at=m.built_at, build_seconds=m.build_seconds, build_id=m.build_id, changes=m.changes,
        images=_storage(collection), disk_bytes=disk_usage(collection.path), skipped=m.skipped,
        skipped_first=skipped_first, years=_years(collection), duplicates=m.duplicates,
        weak_match=None if m.match_scale is None else WeakMatchCut(
            m.match_scale.weak_below, m.match_scale.weak_percentile, m.match_scale.probes),
    )


def _text_recall(index: IndexInfo) -> float | None:
    """The index's recall for text queries, where this program's IndexInfo carries it."""
    value = getattr(index, "text_recall_at_10", None)
    return None if value is None else float(value)


def _storage(collection: Collection) -> ImageStorage:
    m = collection.manifest
    if not collection.references_images:
        return ImageStorage(mode=m.storage)
    root = collection.image_root
    return ImageStorage(mode=m.storage, root=None if root is None else str(root),
                        root_recorded=None if m.image_root is None else m.image_root.absolute,
                        root_found=None if root is None else root.is_dir())


def disk_usage(folder: Path) -> int:
    """Bytes of the files under folder (links not followed): what copying the collection moves."""
    total = 0
    for base, _dirs, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(base, name)).st_size
            except OSError:
                continue
    return total


def _first_skipped(folder: Path) -> list[dict[str, str]]:
    """The first SKIPPED_LISTED entries of skipped.jsonl; an unreadable line is shown as such."""
    found: list[dict[str, str]] = []
    try:
        with open(folder / layout.SKIPPED, encoding="utf-8") as f:
            for line in f:
                if len(found) == SKIPPED_LISTED:
                    break
                if not line.strip():
                    continue
                try:
                    entry: Any = json.loads(line)
                    found.append({"file": str(entry["file"]), "reason": str(entry["reason"])})
                except (ValueError, TypeError, KeyError):
                    found.append({"file": "?", "reason": f"unreadable line in {layout.SKIPPED}"})
    except OSError:
        pass
    return found


def _years(collection: Collection) -> YearRange | None:
    years = collection.years
    if years is None:
        return None
    if len(years) == 0:
        return YearRange(None, None, collection.rows)
    return YearRange(int(years[0]), int(years[-1]), collection.rows - len(years))
