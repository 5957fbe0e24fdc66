"""Hard-ish synthetic vectors with planted near-duplicate groups, for bench_duplicates.

Not clustered like benchmarks/synthetic.py (whose rows sit in tight balls of 100): a continuous
32-d latent with a decaying spectrum, projected to 512-d, plus noise, so nearest neighbours are
spread out as CLIP's are (nearest-neighbour cosine median 0.74, 99th percentile 0.86 at 100k
rows: below the 0.95 duplicate threshold). On top of that, DUPLICATE_SHARE of the rows are copies
in groups of power-law sizes (2 up to MAX_GROUP, like a woodcut reused in hundreds of books), each
copy at cosine 0.97-0.995 to its group's original. Rows are shuffled, so a group's copies are
spread over the years. The index helper's hard-data generator (issue #8 item 1) supersedes this
once it lands.
"""

from __future__ import annotations

import numpy as np

DIM = 512
LATENT = 32
NOISE = 0.25              # norm of the isotropic noise on a unit latent point
DUPLICATE_SHARE = 0.08    # rows that are copies in a group
MAX_GROUP = 500
COPY_NOISE = (0.10, 0.25)  # noise norm per copy: cosine to the original ~0.97-0.995
CHUNK = 100_000


def _basis(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    spectrum = (1.0 / np.arange(1, LATENT + 1)).astype(np.float32)
    basis, _ = np.linalg.qr(rng.standard_normal((DIM, LATENT)).astype(np.float32))
    return spectrum, basis.T.astype(np.float32)


def _points(n: int, rng: np.random.Generator, spectrum: np.ndarray, basis: np.ndarray) -> np.ndarray:
    latent = rng.standard_normal((n, LATENT), dtype=np.float32) * np.sqrt(spectrum)
    x = latent / np.linalg.norm(latent, axis=1, keepdims=True) @ basis
    x += rng.standard_normal((n, DIM), dtype=np.float32) * (NOISE / np.sqrt(DIM))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def group_sizes(copies: int, rng: np.random.Generator) -> list[int]:
    """Sizes (2..MAX_GROUP, power law with exponent 2) adding up to `copies` rows."""
    sizes: list[int] = []
    left = copies
    while left >= 2:
        size = int(min(MAX_GROUP, left, 1 + np.floor(rng.pareto(1.0) + 1)))
        size = max(2, size)
        sizes.append(size)
        left -= size
    return sizes


def grouped_vectors(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(vectors float32 [n, DIM] unit rows, planted group id per row: the group's smallest row)."""
    rng = np.random.default_rng(seed)
    spectrum, basis = _basis(rng)
    sizes = group_sizes(int(n * DUPLICATE_SHARE), rng)
    singles = n - sum(sizes)
    vectors = np.empty((n, DIM), np.float32)
    for lo in range(0, singles + len(sizes), CHUNK):
        hi = min(singles + len(sizes), lo + CHUNK)
        vectors[lo:hi] = _points(hi - lo, rng, spectrum, basis)   # singles, then one original per group
    labels = np.arange(n)
    at = singles + len(sizes)
    for g, size in enumerate(sizes):
        original = singles + g
        extra = size - 1                                            # the original is one of the group
        noise = rng.standard_normal((extra, DIM), dtype=np.float32)
        noise *= (rng.uniform(*COPY_NOISE, (extra, 1)) / np.sqrt(DIM)).astype(np.float32)
        copies = vectors[original] + noise
        vectors[at:at + extra] = copies / np.linalg.norm(copies, axis=1, keepdims=True)
        labels[at:at + extra] = original
        at += extra
    order = rng.permutation(n)
    vectors, labels = vectors[order], labels[order]
    _, first = np.unique(labels, return_index=True)
    first_row = np.empty(labels.max() + 1, np.int64)
    first_row[np.unique(labels)] = first
    return vectors, first_row[labels].astype(np.int32)


def queries(n: int, q: int, seed: int = 0, data_seed: int = 0) -> np.ndarray:
    """Held-out points from the latent distribution of grouped_vectors(n, data_seed) (no copies),
    unit rows. The basis comes from data_seed: drawn from `seed` instead (as before 2026-12-01),
    the queries lay off the rows' subspace, and an index tuned to recall@10 0.98 on its rows found
    0.87 of their neighbours."""
    spectrum, basis = _basis(np.random.default_rng(data_seed))
    return _points(q, np.random.default_rng(seed + 1), spectrum, basis)
