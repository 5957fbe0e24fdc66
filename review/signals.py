"""Optional facts a collection may carry, read in one place.

Builds gain these over time (text-query recall, near-duplicate groups, the weak-match scale,
referenced image storage) and older collections lack them. Each reader here returns None (or a
plain default) when the fact is absent, so the report shows it where it exists and says "not
recorded" elsewhere. The names they look for are the constants below: wiring a new build's names
is a change to this file only.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from search_core import layout
from search_core.collection import Collection

log = logging.getLogger(__name__)

# manifest.json: recall@10 of text queries (probe prompts) against exact search, under "index".
TEXT_RECALL_KEYS = ("text_recall_at_10",)
# manifest.json: how images are stored; absent = copied into dataset/ (the only way today).
STORAGE_KEYS = ("storage",)
DEFAULT_STORAGE = "copy"
# manifest.json: best scores of the probe prompts by percentile, and the weak-match cut
# ({"probes": n, "percentiles": {"5": s, ...}, "weak_percentile": 10, "weak_below": s}).
WEAK_MATCH_KEYS = ("match_scale", "weak_match")
WEAK_CUT_KEYS = ("weak_below", "threshold")
# Beside manifest.json: int32 [rows], each row's near-duplicate group (the group's smallest row; a
# row alone is its own group; negative = none). The manifest says how groups were made.
GROUPS_FILE = "groups.npy"
DUPLICATES_KEY = "duplicates"     # {"threshold": cosine, "groups": n, "grouped_rows": n, "largest": n}
# Hit attribute: how many near-identical images a (collapsed) hit stands for, itself included.
HIT_GROUP_SIZE = "group_size"


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
    quantiles: tuple[tuple[str, float], ...] = ()   # (label such as "p10", best score), ascending
    prompts: int | None = None                       # how many prompts the scale was measured on
    percentile: int | None = None                    # the percentile the cut sits at

    def is_weak(self, best_score: float | None) -> bool:
        return best_score is None or best_score < self.threshold


def weak_match_scale(raw: dict[str, Any]) -> WeakMatchScale | None:
    """The manifest's weak-match scale, or None when the build recorded none.

    Reads ``{"weak_below": t, "percentiles": {"5": s, ...}, "probes": n, "weak_percentile": p}``;
    a "threshold" / "quantiles" / "scores" spelling is read too.
    """
    found = _first(raw, WEAK_MATCH_KEYS)
    threshold = _number(_first(found, WEAK_CUT_KEYS))
    if threshold is None:
        return None
    quantiles: list[tuple[str, float]] = []
    table = found.get("percentiles") or found.get("quantiles")
    if isinstance(table, dict):
        for key, value in table.items():
            number = _number(value)
            if number is not None:
                quantiles.append((f"p{key}" if str(key).isdigit() else str(key), number))
    scores = np.asarray([s for s in map(_number, found.get("scores") or []) if s is not None], dtype=np.float64)
    if not quantiles and scores.size:
        quantiles = [(f"p{q}", float(np.percentile(scores, q))) for q in (5, 10, 25, 50, 75, 90, 95)]
    prompts = _number(found.get("probes", found.get("prompts", scores.size or None)))
    percentile = _number(found.get("weak_percentile"))
    return WeakMatchScale(threshold=threshold, quantiles=tuple(sorted(quantiles, key=lambda kv: kv[1])),
                          prompts=int(prompts) if prompts else None,
                          percentile=int(percentile) if percentile is not None else None)


@dataclass(frozen=True)
class DuplicateGroup:
    """A near-duplicate group: its size and the first few of its rows."""

    group: int
    size: int
    rows: tuple[int, ...]


def near_duplicate_groups(collection: Collection, *, limit: int, members: int,
                          exclude_rows: np.ndarray | None = None) -> list[DuplicateGroup] | None:
    """The `limit` biggest groups of two or more rows, or None when the collection records no groups.

    One pass over the group file (np.unique: about 0.1 s at 1M rows); hidden rows are left out.
    """
    file = collection.path / GROUPS_FILE
    if not file.is_file():
        return None
    try:
        ids = np.array(np.load(file, mmap_mode="r", allow_pickle=False), dtype=np.int64)
    except (OSError, ValueError) as exc:
        log.warning("%s cannot be read (%s); near-duplicate groups not shown", GROUPS_FILE, exc)
        return None
    if ids.shape != (collection.rows,):
        log.warning("%s holds %s ids for %d rows; near-duplicate groups not shown", GROUPS_FILE, ids.shape,
                    collection.rows)
        return None
    if exclude_rows is not None and exclude_rows.size:
        ids[exclude_rows] = -1
    groups, counts = np.unique(ids[ids >= 0], return_counts=True)
    order = np.argsort(-counts, kind="stable")
    order = order[counts[order] >= 2][:limit]
    return [DuplicateGroup(group=int(groups[i]), size=int(counts[i]),
                           rows=tuple(np.flatnonzero(ids == groups[i])[:members].tolist())) for i in order]


def duplicate_threshold(raw: dict[str, Any]) -> float | None:
    """The cosine at or above which the build called two images near-identical, if it grouped them."""
    info = raw.get(DUPLICATES_KEY)
    return _number(info.get("threshold")) if isinstance(info, dict) else None


def group_size(hit: Any) -> int:
    """How many near-identical images a hit stands for (1 where search does not collapse them)."""
    size = getattr(hit, HIT_GROUP_SIZE, 1)
    return int(size) if isinstance(size, (int, np.integer)) and size > 1 else 1
