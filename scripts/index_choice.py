"""Which FAISS index a collection gets: a pure function of its size, from measured figures.

Measured on the hard benchmark data (benchmarks/hard_data.py: a CLIP-like manifold with clusters,
near-duplicates and text-like queries with a modality gap), 512-d, 2 CPU cores, one query at a
time on one thread, candidates re-ranked exactly from embeddings.npy. Text-like queries decide:
image-like ones reach recall@10 0.97 with far less work. At 1M rows, the cheapest setting for
text recall@10 >= 0.97 (`python -m benchmarks.bench_index_candidates`, BENCHMARKS.md section 2):

| index                                  | setting              | recall text / image | raw p50 / p95 ms | size    |
|----------------------------------------|----------------------|---------------------|------------------|---------|
| PCAR256,IVF4000,SQ8_direct_signed      | nprobe 192, 100/10   | 0.978 / 1.000       | 1.11 / 1.31      | 256 MiB |
| RR512,IVF4000,SQ8_direct_signed        | nprobe 128, 20/10    | 0.971 / 1.000       | 1.54 / 13.31     | 505 MiB |
| IVF4096,SQ8                            | nprobe 192, 20/10    | 0.971 / 0.999       | 3.49 / 8.04      | 504 MiB |
| RR512,IVF16384_HNSW32,SQ8_direct_signed| nprobe 512, 20/10    | 0.971 / 0.998       | 3.07 / 4.33      | 533 MiB |
(under 50-80% load from other processes; "100/10": candidates re-ranked per 10 hits.)

- Int8 codes scored with integer dot products (SQ8_direct_signed), twice as fast as SQ8's
  per-dimension decoding at equal recall. A leading transform carries their scale
  (scripts/indexing.py fits it): RR, a random rotation that spreads every vector evenly over the
  dimensions; or PCAR<k>, a projection onto the rows' top k directions, then rotated, so a row
  costs k bytes. A query's scan reads every code of its lists, so half the bytes is nearly half
  the time; the lost precision costs recall that a deeper exact re-rank buys back.
- IVF, not a graph: the text queries' neighbours lie across several clusters; HNSW needs an
  efSearch so wide for them that it is slower than IVF, and a year range on a graph loses
  recall, while IVF with rows in year order scans only each list's stretch of the range
  (search_core/index_params.py). More lists under an HNSW quantizer scan fewer rows per probe,
  but need so many probes for text queries that the quantizer search costs more than it saves.
- 4-bit codes (PQ fast-scan) cannot order the text queries' scores, which lie within 0.015 of
  each other over the top ten, even with 1,000 candidates re-scored.
- PCAR only where the top half of the directions holds most of the rows' second moment
  (PCA_MIN_ENERGY): 98.7% on the hard data, whose spectrum decays as CLIP's does, but 57.7% on
  the isotropic easy data, where a year range over 11% of the rows then reached recall 0.942-0.966
  at any affordable re-rank depth and probe count (RR: 0.972). Below it, RR keeps every dimension.
- Exact Flat while it is nearly free (rows x dim up to 5,000 x 512; 0.5 ms at 10k rows).
nlist = 4·sqrt(n) (FAISS's guideline is 4-16·sqrt(n)), capped so each list gets at least 39
training points, the minimum FAISS's k-means asks for.
"""

from __future__ import annotations

import math
from collections.abc import Callable

# Exact search while rows x dim stays below this (5,000 rows of 512 floats).
FLAT_MAX_FLOATS = 5_000 * 512
MIN_POINTS_PER_CENTROID = 39
# From this many rows the int8 codes keep half the dimensions (PCAR): see the table above.
PCA_MIN_ROWS = 200_000
# ...and where those directions hold at least this share of the rows' second moment.
PCA_MIN_ENERGY = 0.90

# Named choices for --index; anything else is passed to faiss.index_factory as it is.
INDEX_NAMES = ("auto", "flat", "sqfp16", "hnsw", "ivf-sq8", "ivf-int8", "ivf-pca-int8")


def ivf_nlist(n: int) -> int:
    """Number of IVF lists for n vectors: 4·sqrt(n), at most n/39, at least 1."""
    return max(1, min(int(4 * math.sqrt(n)), n // MIN_POINTS_PER_CENTROID))


def ivf_int8_spec(n: int, dim: int) -> str:
    """IVF over int8 codes of randomly rotated, scaled vectors (the scale is fitted at build)."""
    return f"RR{dim},IVF{ivf_nlist(n)},SQ8_direct_signed"


def ivf_pca_int8_spec(n: int, dim: int) -> str:
    """IVF over int8 codes of the rows projected onto their top dim/2 directions (fitted at build)."""
    return f"PCAR{max(1, dim // 2)},IVF{ivf_nlist(n)},SQ8_direct_signed"


# energy(k): the share of the rows' second moment their top k directions hold (measured lazily).
Energy = Callable[[int], float]


def choose_index(n: int, dim: int, energy: Energy | None = None) -> str:
    """FAISS factory string for n vectors of dimension dim: exact while cheap, then IVF over int8
    codes, of half the dimensions from PCA_MIN_ROWS rows when those hold PCA_MIN_ENERGY of the
    rows' second moment (`energy`, asked only then; None: assume they do)."""
    if n <= 0 or dim <= 0:
        raise ValueError(f"choose_index needs n > 0 and dim > 0, got n={n}, dim={dim}")
    if n * dim <= FLAT_MAX_FLOATS:
        return "Flat"
    if n >= PCA_MIN_ROWS and (energy is None or energy(max(1, dim // 2)) >= PCA_MIN_ENERGY):
        return ivf_pca_int8_spec(n, dim)
    return ivf_int8_spec(n, dim)


def resolve_index_spec(index: str, n: int, dim: int, energy: Energy | None = None) -> str:
    """The --index option as a FAISS factory string ('auto' -> choose_index)."""
    name = index.strip()
    key = name.lower()
    if key == "auto":
        return choose_index(n, dim, energy)
    if key == "flat":
        return "Flat"
    if key == "sqfp16":
        return "SQfp16"
    if key == "hnsw":
        return "HNSW32"
    if key == "ivf-sq8":
        return f"IVF{ivf_nlist(n)},SQ8"
    if key == "ivf-int8":
        return ivf_int8_spec(n, dim)
    if key == "ivf-pca-int8":
        return ivf_pca_int8_spec(n, dim)
    return name
