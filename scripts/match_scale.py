"""The weak-match scale for `imagesearch build`: how strong the probe prompts' best hits are.

The shipped probe prompts (search_core/probes.py) are encoded with the collection's own model and
searched exactly against every row; the percentiles of their best scores go into the manifest
(layout.MatchScale), and search_core/weak_match.py marks a text query whose best hit falls below
the WEAK_PERCENTILE-th of them. Exact, not through the index: a few hundred prompts against 1M rows
is one matrix product of about 3 s on 2 cores, and the scale must not carry the index's misses.
"""

from __future__ import annotations

import faiss
import numpy as np

from search_core.layout import MatchScale
from search_core.probes import load_probe_prompts
from search_core.weak_match import PERCENTILES, WEAK_PERCENTILE


def probe_vectors(encoder) -> np.ndarray:
    """The probe prompts encoded by `encoder` (the collection's model): float32 [prompts, dim], unit rows."""
    return np.ascontiguousarray(encoder.encode_text(list(load_probe_prompts())), dtype=np.float32)


def match_scale(vectors: np.ndarray, probes: np.ndarray) -> MatchScale:
    """Percentiles of each probe's best exact score against `vectors`, and the weak-match cut."""
    best, _ = faiss.knn(np.ascontiguousarray(probes, dtype=np.float32),
                        np.ascontiguousarray(vectors, dtype=np.float32), 1, metric=faiss.METRIC_INNER_PRODUCT)
    best = best[:, 0].astype(np.float64)
    percentiles = {str(p): round(float(np.percentile(best, p)), 6) for p in PERCENTILES}
    return MatchScale(probes=int(best.size), percentiles=percentiles, weak_percentile=WEAK_PERCENTILE,
                      weak_below=percentiles[str(WEAK_PERCENTILE)])
