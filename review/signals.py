"""Optional facts a collection or a moderation policy may carry, read in one place.

Builds and policies gain these over time (text-query recall, near-duplicate groups, the weak-match
scale, referenced image storage, concept categories, a bulk image check). Each reader here
returns None (or a plain default) when the fact is absent, so the report shows it where it exists
and says "not recorded" elsewhere. The names they look for are the constants below: wiring a new
build's names is a change to this file only.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from search_core import layout
from search_core.collection import Collection

if TYPE_CHECKING:
    from PIL import Image

log = logging.getLogger(__name__)

# manifest.json: recall@10 of text queries (probe prompts) against exact search, under "index".
TEXT_RECALL_KEYS = ("text_recall_at_10",)
# manifest.json: how images are stored; absent = copied into dataset/ (the only way today).
STORAGE_KEYS = ("storage",)
DEFAULT_STORAGE = "copy"
# manifest.json: the distribution of best scores over the probe prompts, and the weak-match cut.
WEAK_MATCH_KEYS = ("weak_match",)
# dataset/ column: a near-duplicate group id per row (negative or null = no group).
GROUP_COLUMNS = ("near_duplicate_group", "dup_group", "group_id")
# Decision attribute naming the concept category that refused a query.
CONCEPT_CATEGORY_ATTR = "concept_category"
# ModerationPolicy method: (vectors [n, dim]) -> one Decision per image vector.
POLICY_IMAGE_CHECK = "check_images"
# Collection method: (row, longest side in px) -> the row's image decoded at about that size
# (Pillow's draft mode: a 6000x8000 scan decodes at 1/4 or 1/8 scale instead of in full).
COLLECTION_SIZED_IMAGE = "thumbnail"


def raw_manifest(collection: Collection) -> dict[str, Any]:
    """manifest.json as a plain dict, keys this program's Manifest class may not know included."""
    try:
        raw = json.loads((collection.path / layout.MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return raw if isinstance(raw, dict) else {}


def _first(mapping: Any, keys: Sequence[str]) -> Any:
    if not isinstance(mapping, dict):
        return None
    return next((mapping[k] for k in keys if mapping.get(k) is not None), None)


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if np.isfinite(number) else None


def text_recall(raw: dict[str, Any]) -> float | None:
    """Recall@10 the build measured for text queries, if it did."""
    return _number(_first(raw.get("index"), TEXT_RECALL_KEYS) or _first(raw, TEXT_RECALL_KEYS))


def storage(raw: dict[str, Any]) -> str:
    """How the collection holds its images: "copy" unless the manifest says otherwise."""
    value = _first(raw, STORAGE_KEYS)
    if isinstance(value, dict):
        value = value.get("mode") or value.get("kind")
    return str(value) if value else DEFAULT_STORAGE


@dataclass(frozen=True)
class WeakMatchScale:
    """Best scores of the build's probe prompts, and the score below which a best hit is weak."""

    threshold: float
    quantiles: tuple[tuple[str, float], ...] = ()   # (label, best score), ascending
    prompts: int | None = None                       # how many prompts the scale was measured on

    def is_weak(self, best_score: float | None) -> bool:
        return best_score is None or best_score < self.threshold


def weak_match_scale(raw: dict[str, Any]) -> WeakMatchScale | None:
    """The manifest's weak-match scale: a dict with a threshold and optional quantiles.

    Accepted shapes: ``{"threshold": t, "quantiles": {"p5": s, "p50": s, ...}}`` (also
    "percentiles"), or ``{"threshold": t, "scores": [...]}`` from which quantiles are computed.
    """
    found = _first(raw, WEAK_MATCH_KEYS)
    if not isinstance(found, dict):
        return None
    threshold = _number(found.get("threshold"))
    if threshold is None:
        return None
    quantiles: list[tuple[str, float]] = []
    table = found.get("quantiles") or found.get("percentiles")
    if isinstance(table, dict):
        quantiles = [(str(k), v) for k, v in ((k, _number(v)) for k, v in table.items()) if v is not None]
    scores = np.asarray([s for s in map(_number, found.get("scores") or []) if s is not None], dtype=np.float64)
    if not quantiles and scores.size:
        quantiles = [(f"p{q}", float(np.percentile(scores, q))) for q in (5, 10, 25, 50, 75, 90, 95)]
    prompts = found.get("prompts", found.get("count", scores.size or None))
    return WeakMatchScale(threshold=threshold, quantiles=tuple(sorted(quantiles, key=lambda kv: kv[1])),
                          prompts=int(prompts) if isinstance(prompts, (int, float)) else None)


@dataclass(frozen=True)
class DuplicateGroup:
    """A near-duplicate group: its size and the first few of its rows."""

    group: int
    size: int
    rows: tuple[int, ...]


def near_duplicate_groups(collection: Collection, *, limit: int, members: int,
                          exclude_rows: np.ndarray | None = None) -> list[DuplicateGroup] | None:
    """The `limit` biggest groups of two or more rows, or None when the collection records no groups.

    One pass over the group column (np.unique: about 0.1 s at 1M rows); hidden rows are left out.
    """
    column = next((c for c in GROUP_COLUMNS if c in collection.dataset.column_names), None)
    if column is None:
        return None
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        ids = pc.cast(collection.dataset.data.column(column), "int64").fill_null(-1).to_numpy(zero_copy_only=False)
    except pa.ArrowException as exc:
        log.warning("the %s column is not a group id (%s); near-duplicate groups not shown", column, exc)
        return None
    ids = np.array(ids, dtype=np.int64)
    if exclude_rows is not None and exclude_rows.size:
        ids[exclude_rows] = -1
    groups, counts = np.unique(ids[ids >= 0], return_counts=True)
    order = np.argsort(-counts, kind="stable")
    order = order[counts[order] >= 2][:limit]
    return [DuplicateGroup(group=int(groups[i]), size=int(counts[i]),
                           rows=tuple(np.flatnonzero(ids == groups[i])[:members].tolist())) for i in order]


def concept_category(decision: Any) -> str | None:
    """The category of the concept that refused a query, where the policy records one."""
    value = getattr(decision, CONCEPT_CATEGORY_ATTR, None)
    return str(value) if value else None


@dataclass(frozen=True)
class ImageFlag:
    """Whether the concept filter would flag an image, and the concept's category where known."""

    flagged: bool
    category: str | None = None


def flag_images(policy: Any, vectors: np.ndarray) -> list[ImageFlag]:
    """One ImageFlag per image vector: would the concept filter flag this image?

    Uses the policy's bulk check where it has one (Decisions or booleans), else
    `check_vector(kind="image")` per row.
    """
    vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
    bulk = getattr(policy, POLICY_IMAGE_CHECK, None)
    answers = list(bulk(vectors)) if bulk is not None else [policy.check_vector(v, kind="image") for v in vectors]
    return [ImageFlag(not a.allowed, concept_category(a)) if hasattr(a, "allowed") else ImageFlag(bool(a))
            for a in answers]


def image_at_most(collection: Collection, row: int, side: int) -> Image.Image:
    """The row's image for a view at most `side` px long, decoded at that size where the
    collection can (its sized decode), else in full; raises what Collection.image raises."""
    sized = getattr(collection, COLLECTION_SIZED_IMAGE, None)
    return sized(row, side) if sized is not None else collection.image(row)
