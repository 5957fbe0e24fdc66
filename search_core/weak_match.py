"""The weak-match signal: is this text query's best hit a real match or just the best of nothing?

CLIP always returns a nearest image, and a text-to-image cosine means little on its own (a good
match may score 0.3, an image-to-image one 0.9). So the scale comes from the collection itself:
at build time the shipped probe prompts (search_core/probes.py, generic descriptions of book
illustrations) are searched with the collection's own model, and the percentiles of their best
scores go into the manifest (layout.MatchScale).

The cut is the 10th percentile: a query is a weak match when its best hit scores lower than the
best hit of 9 in 10 of those everyday prompts. Why 10: the ~290 probes put ~29 prompts below the
cut, enough for a stable estimate, and those are the subjects this collection has least of; a
cut at the 5th percentile rests on ~15 prompts, at the 25th it would flag one ordinary prompt in
four. Only text queries are judged: the scale is built from text prompts, and image queries score
on another scale (image-to-image cosines run far higher), so they would never be marked.
"""

from __future__ import annotations

from search_core.layout import MatchScale

WEAK_PERCENTILE = 10
PERCENTILES = (5, 10, 25, 50, 75, 90, 95)


def is_weak(score: float, scale: MatchScale | None) -> bool | None:
    """Whether `score` is below the collection's weak-match cut; None without a scale."""
    if scale is None:
        return None
    return bool(score < scale.weak_below)
