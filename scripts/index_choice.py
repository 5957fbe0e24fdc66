"""Which FAISS index a collection gets: a pure function of its size, from measured figures.

Measured on the hard benchmark data (benchmarks/hard_data.py: a CLIP-like manifold with clusters,
near-duplicates and text-like queries with a modality gap), 512-d, 2 CPU cores, one query at a
time on one thread, candidates re-ranked exactly from embeddings.npy. Text-like queries decide:
image-like ones reach recall@10 0.97 with a third of the work. At 1M rows, raw index search:

| index                                  | setting      | recall@10 image / text | p50 / p95 ms    | memory  |
|----------------------------------------|--------------|------------------------|-----------------|---------|
| IVF4096,SQ8                            | nprobe 96    | 0.994 / 0.940          | 2.66 / 3.43 *   | 0.50 GiB|
| RR512,IVF4096,SQ8_direct_signed        | nprobe 192   | 0.998 / 0.972          | 1.74 / 2.17 *   | 0.50 GiB|
| HNSW32,SQ8 (efConstruction 80)         | efSearch 512 | 0.999 / 0.922          | 2.15 / 3.78 *   | 0.73 GiB|
| IVF4096,PQ128x4fs + SQ8 refine of 1000 | nprobe 192   | 0.947 / 0.762          | 1.43 / 1.64     | 0.55 GiB|
| IVF4096,RaBitQfs4 (4-bit), re-rank 50  | nprobe 384   | 1.000 / 0.980          | 17 / 23 *       | 0.29 GiB|
(* under 50-80% load from other processes; the nprobe-192 int8 row and the SQ8 row beside it
were timed in one process: int8 is 1.9-2.0x faster at equal recall.)

- The int8 index: a random rotation (RR) spreads each vector evenly over the dimensions, and its
  matrix is scaled so the collection's largest component fits an int8; SQ8_direct_signed then
  stores those integers and FAISS scores them with integer dot products, twice as fast as
  SQ8's per-dimension decoding, at the same recall (scripts/indexing.py fits the scale).
- IVF, not a graph: the text queries' neighbours lie across several clusters; HNSW needs an
  efSearch so wide for them that it is slower than IVF, and a year range on a graph loses
  recall (0.920-0.987 at 100k easy rows for efSearch 32-256), while IVF with rows in year
  order scans only each list's stretch of the range (search_core/index_params.py).
- 4-bit codes (PQ fast-scan, 1-bit RaBitQ) cannot order the text queries' scores, which lie
  within 0.015 of each other over the top ten, even with 1,000 candidates re-scored; 4-bit
  RaBitQ can, but its per-list query set-up costs 10x the scan.
- Exact Flat while it is nearly free (rows x dim up to 5,000 x 512; 0.5 ms at 10k rows).
nlist = 4·sqrt(n) (FAISS's guideline is 4-16·sqrt(n)), capped so each list gets at least 39
training points, the minimum FAISS's k-means asks for.
"""

from __future__ import annotations

import math

# Exact search while rows x dim stays below this (5,000 rows of 512 floats).
FLAT_MAX_FLOATS = 5_000 * 512
MIN_POINTS_PER_CENTROID = 39

# Named choices for --index; anything else is passed to faiss.index_factory as it is.
INDEX_NAMES = ("auto", "flat", "sqfp16", "hnsw", "ivf-sq8", "ivf-int8")


def ivf_nlist(n: int) -> int:
    """Number of IVF lists for n vectors: 4·sqrt(n), at most n/39, at least 1."""
    return max(1, min(int(4 * math.sqrt(n)), n // MIN_POINTS_PER_CENTROID))


def ivf_int8_spec(n: int, dim: int) -> str:
    """IVF over int8 codes of randomly rotated, scaled vectors (the scale is fitted at build)."""
    return f"RR{dim},IVF{ivf_nlist(n)},SQ8_direct_signed"


def choose_index(n: int, dim: int) -> str:
    """FAISS factory string for n vectors of dimension dim: exact while cheap, else IVF-int8."""
    if n <= 0 or dim <= 0:
        raise ValueError(f"choose_index needs n > 0 and dim > 0, got n={n}, dim={dim}")
    if n * dim <= FLAT_MAX_FLOATS:
        return "Flat"
    return ivf_int8_spec(n, dim)


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
    if key == "ivf-int8":
        return ivf_int8_spec(n, dim)
    return name
