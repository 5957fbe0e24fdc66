"""Which FAISS index a collection gets: a pure function of its size, from measured figures.

Figures from anchors/faiss_results.md and BENCHMARKS.md (2 CPU cores, 512-d, one query at a time):
- Approximate candidates are re-ranked exactly from embeddings.npy (search_core.rerank), which
  takes IVF-SQ8's recall@10 to 0.997-1.000 on the benchmark's clustered vectors, so exact Flat
  only pays off while it is nearly free: 0.2 ms at 5k rows, but 0.53 ms at 10k where IVF256,SQ8
  answers in 0.13 ms (recall 0.997), and 13 ms at 100k.
- Above that, IVF with 8-bit scalar quantisation: IVF1264,SQ8 at 100k, IVF4000,SQ8 at 1M
  (504 MB, p95 0.4 ms, recall 1.000 after re-ranking).
- Not chosen: HNSW builds too slowly on 2 cores (39 s at 100k, over 10 min at 1M); PQ without
  re-ranking reached recall 0.33-0.42.
nlist = 4·sqrt(n) matches both measured points (1264 at 100k, 4000 at 1M) and FAISS's guideline
(4·sqrt(n) to 16·sqrt(n)); it is capped so each list gets at least 39 training points, the
minimum FAISS's k-means asks for.
"""

from __future__ import annotations

import math

# Exact search while rows x dim stays below this (5,000 rows of 512 floats).
FLAT_MAX_FLOATS = 5_000 * 512
MIN_POINTS_PER_CENTROID = 39

# Named choices for --index; anything else is passed to faiss.index_factory as it is.
INDEX_NAMES = ("auto", "flat", "sqfp16", "hnsw", "ivf-sq8")


def ivf_nlist(n: int) -> int:
    """Number of IVF lists for n vectors: 4·sqrt(n), at most n/39, at least 1."""
    return max(1, min(int(4 * math.sqrt(n)), n // MIN_POINTS_PER_CENTROID))


def choose_index(n: int, dim: int) -> str:
    """FAISS factory string for n vectors of dimension dim: exact while cheap, else IVF-SQ8."""
    if n <= 0 or dim <= 0:
        raise ValueError(f"choose_index needs n > 0 and dim > 0, got n={n}, dim={dim}")
    if n * dim <= FLAT_MAX_FLOATS:
        return "Flat"
    return f"IVF{ivf_nlist(n)},SQ8"


def resolve_index_spec(index: str, n: int, dim: int) -> str:
    """The --index option as a FAISS factory string ('auto' -> choose_index)."""
    name = index.strip()
    key = name.lower()
    if key == "auto":
        return choose_index(n, dim)
    if key == "flat":
        return "Flat"
    if key == "sqfp16":
        return "SQfp16"
    if key == "hnsw":
        return "HNSW32"
    if key == "ivf-sq8":
        return f"IVF{ivf_nlist(n)},SQ8"
    return name
