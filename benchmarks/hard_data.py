"""Hard synthetic data for search benchmarks, modelled on CLIP embeddings of book illustrations.

The easy data (`benchmarks.synthetic`) puts every row near one of n/100 tight centres, so a
query's ten nearest rows share one IVF list and any index looks exact. Real CLIP vectors are
not like that, and this generator imitates what makes them hard:

- a continuous, curved manifold: a 32-d latent with a decaying spectrum, mapped to 512-d
  linearly plus a smaller non-linear part (so it is not a flat 32-d subspace), under a 512-d
  residual whose spectrum decays as a power law (no clean cut-off for PCA to find);
- clusters of very unequal sizes (Zipf weights) that overlap, so the manifold has dense and
  sparse regions rather than islands;
- one shared "image" direction, as CLIP image vectors sit in a narrow cone (random pairs at
  cosine ~0.5, nearest neighbours ~0.85-0.9);
- groups of near-duplicates (the same ornament printed in many books): copies of one vector at
  cosine ~0.97 to it, spread over many years;
- years correlated with content (each cluster has a period), so a year range changes which
  rows are near a query.

Two query sets: image-like (held-out rows drawn as the collection is) and text-like (the
"modality gap": a text direction of their own, sharing only the manifold part with the images,
so the best cosine to the collection is ~0.3 and a query's top ten lie where the manifold
extends furthest along the query, spread over several clusters; see `data_statistics`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

DIM = 512
LATENT = 32
YEARS = (1700, 1899)
CHUNK = 50_000


@dataclass(frozen=True)
class HardParams:
    """Knobs of the generator; the defaults give the statistics in `data_statistics`' docstring."""

    dim: int = DIM
    latent: int = LATENT
    latent_decay: float = 0.5          # latent axis j has std (j+1)^-decay
    rows_per_cluster: int = 2_000      # n / this clusters (at least 8)
    zipf: float = 1.0                  # cluster weight of rank r is r^-zipf
    cluster_spread: float = 0.6        # within-cluster std, relative to the spread of the centres
    curve: float = 0.35                # weight of the non-linear part of the manifold map
    manifold: float = 1.0              # norm scale of the manifold part
    residual: float = 0.55             # norm scale of the 512-d residual
    residual_decay: float = 1.0        # residual axis k has variance (k+1)^-decay
    image_offset: float = 1.15         # weight of the shared image direction
    duplicate_share: float = 0.03      # rows that are copies in near-duplicate groups
    duplicate_noise: float = 0.25      # copy = base + this x a unit-norm residual draw (cos ~0.97)
    max_group: int = 400               # largest near-duplicate group
    text_offset: float = 1.9           # weight of the shared text direction
    text_concepts: int = 1             # a prompt mixes this many clusters' concepts (Dirichlet weights)
    text_spread: float = 0.6           # latent std of a prompt's concept around its cluster centre (relative)
    text_manifold: float = 0.38        # norm scale of a text query's manifold part
    text_noise: float = 0.9            # norm of a text query's own isotropic noise
    gap_cosine: float = 0.25           # cosine between the image and the text directions
    year_spread: float = 35.0          # std of a row's year around its cluster's period


@dataclass
class _World:
    """The fixed parts drawn once per seed: maps, directions, clusters."""

    p: HardParams
    scale: np.ndarray                  # [latent] std per latent axis
    linear: np.ndarray                 # [latent, dim]
    bend_in: np.ndarray                # [latent, latent]
    bend_out: np.ndarray               # [latent, dim]
    residual_basis: np.ndarray         # [dim, dim], rows scaled by the residual spectrum
    image_dir: np.ndarray              # [dim]
    text_dir: np.ndarray               # [dim]
    centres: np.ndarray                # [clusters, latent]
    weights: np.ndarray                # [clusters], sum 1
    periods: np.ndarray                # [clusters] mean year

    @classmethod
    def make(cls, n: int, p: HardParams, seed: int) -> _World:
        rng = np.random.default_rng([seed, 1])
        scale = (np.arange(p.latent) + 1.0) ** -p.latent_decay
        scale = scale / np.sqrt((scale ** 2).sum())            # latent vector of norm ~1
        basis = np.linalg.qr(rng.standard_normal((p.dim, p.dim)))[0].astype(np.float32)
        linear = basis[:, :p.latent].T.copy()
        bend_out = basis[:, p.latent:2 * p.latent].T.copy()
        image_dir, e_perp = basis[:, 2 * p.latent], basis[:, 2 * p.latent + 1]
        text_dir = p.gap_cosine * image_dir + np.sqrt(1 - p.gap_cosine ** 2) * e_perp
        bend_in = rng.standard_normal((p.latent, p.latent)).astype(np.float32) * 2.0
        spectrum = (np.arange(p.dim) + 1.0) ** -p.residual_decay
        spectrum = np.sqrt(spectrum / spectrum.sum()).astype(np.float32)
        residual_basis = np.linalg.qr(rng.standard_normal((p.dim, p.dim)))[0].T.astype(np.float32)
        residual_basis *= spectrum[:, None]
        clusters = max(8, n // p.rows_per_cluster)
        centres = (rng.standard_normal((clusters, p.latent)) * scale).astype(np.float32)
        weights = (np.arange(clusters) + 1.0) ** -p.zipf
        weights = rng.permutation(weights / weights.sum())
        periods = rng.uniform(YEARS[0] + 20, YEARS[1] - 20, clusters)
        return cls(p, scale.astype(np.float32), linear, bend_in, bend_out, residual_basis,
                   image_dir.astype(np.float32), text_dir.astype(np.float32), centres, weights, periods)

    def latent_points(self, clusters: np.ndarray, rng: np.random.Generator, spread: float) -> np.ndarray:
        noise = rng.standard_normal((len(clusters), self.p.latent)).astype(np.float32) * self.scale * spread
        return self.centres[clusters] + noise

    def manifold(self, z: np.ndarray) -> np.ndarray:
        """The 512-d manifold point of latent z: linear part plus a curved part."""
        bent = np.tanh(z @ self.bend_in) * np.float32(np.sqrt(1.0 / self.p.latent))
        return z @ self.linear + np.float32(self.p.curve) * (bent @ self.bend_out)

    def residual(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return rng.standard_normal((n, self.p.dim), dtype=np.float32) @ self.residual_basis

    def images(self, clusters: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        p = self.p
        z = self.latent_points(clusters, rng, p.cluster_spread)
        x = (np.float32(p.manifold) * self.manifold(z) + np.float32(p.residual) * self.residual(len(z), rng)
             + np.float32(p.image_offset) * self.image_dir)
        return _unit(x)

    def texts(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Text-like queries: a concept (any cluster, whatever its size) seen from the text side."""
        p = self.p
        mix = rng.dirichlet(np.ones(p.text_concepts), size=n).astype(np.float32)
        z = sum(mix[:, [i]] * self.latent_points(rng.integers(0, len(self.centres), n), rng, p.text_spread)
                for i in range(p.text_concepts))
        noise = rng.standard_normal((n, p.dim)).astype(np.float32) / np.float32(np.sqrt(p.dim))
        x = (np.float32(p.text_manifold) * self.manifold(z) + np.float32(p.text_noise) * noise
             + np.float32(p.text_offset) * self.text_dir)
        return _unit(x)

    def years(self, clusters: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        years = self.periods[clusters] + rng.standard_normal(len(clusters)) * self.p.year_spread
        return np.clip(np.rint(years), *YEARS).astype(np.int32)


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@dataclass(frozen=True)
class HardData:
    """A generated collection's rows (not yet sorted by year) and its two query sets."""

    vectors: np.ndarray          # float32 [n, dim], unit rows (may be a memory map)
    years: np.ndarray            # int32 [n]
    clusters: np.ndarray         # int32 [n], the generating cluster (for statistics)
    duplicate_group: np.ndarray  # int32 [n], -1 or the near-duplicate group a row belongs to
    image_queries: np.ndarray    # float32 [q, dim]
    text_queries: np.ndarray     # float32 [q, dim]


def generate(n: int, *, queries: int = 1000, seed: int = 0, params: HardParams = HardParams(),
             out: np.ndarray | None = None) -> HardData:
    """Generate n rows (into `out`, e.g. a memory map, when given) and the two query sets."""
    world = _World.make(n, params, seed)
    rng = np.random.default_rng([seed, 2])
    clusters = rng.choice(len(world.weights), size=n, p=world.weights).astype(np.int32)
    vectors = out if out is not None else np.empty((n, params.dim), np.float32)
    for lo in range(0, n, CHUNK):
        hi = min(n, lo + CHUNK)
        vectors[lo:hi] = world.images(clusters[lo:hi], np.random.default_rng([seed, 3, lo]))
    years = world.years(clusters, rng)
    groups = _add_duplicates(vectors, params, np.random.default_rng([seed, 4]))
    image_queries = world.images(rng.choice(len(world.weights), size=queries, p=world.weights),
                                 np.random.default_rng([seed, 5]))
    text_queries = world.texts(queries, np.random.default_rng([seed, 6]))
    return HardData(vectors, years, clusters, groups, image_queries, text_queries)


def _add_duplicates(vectors: np.ndarray, p: HardParams, rng: np.random.Generator) -> np.ndarray:
    """Overwrite duplicate_share of the rows with copies of group bases; returns the group ids.

    Group sizes follow a power law from 2 to max_group; a copy keeps its own row's year (the
    ornament reprinted in another book), and its noise is a residual-like draw of fixed norm.
    """
    n, dim = vectors.shape
    groups = np.full(n, -1, np.int32)
    budget = int(n * p.duplicate_share)
    if budget < 2:
        return groups
    sizes = []
    while sum(sizes) < budget:
        sizes.append(int(min(p.max_group, max(2, 2 * (1 - rng.random()) ** -1.2))))
    rows = rng.permutation(n)[:sum(sizes)]
    start = 0
    for g, size in enumerate(sizes):
        members = np.sort(rows[start:start + size])
        start += size
        base = np.asarray(vectors[members[0]], np.float32)
        noise = rng.standard_normal((size - 1, dim)).astype(np.float32)
        noise *= p.duplicate_noise / np.linalg.norm(noise, axis=1, keepdims=True)
        vectors[members[1:]] = _unit(base + noise)
        groups[members] = g
    return groups


def text_query_for(prompt: str, n_rows: int, *, seed: int = 0, params: HardParams = HardParams()) -> np.ndarray:
    """A text-like query vector for any prompt, fixed by the prompt's hash: the "text tower" of
    the synthetic world, so the build's probe prompts land where benchmark text queries do."""
    world = _World.make(n_rows, params, seed)
    digest = int.from_bytes(hashlib.sha256(prompt.encode("utf-8")).digest()[:8], "little")
    return world.texts(1, np.random.default_rng([seed, 7, digest]))[0]


class HardTextEncoder:
    """Stands in for CLIP in a hard-data build and search: text -> `text_query_for`.

    `scripts.build` encodes the shipped probe prompts with the collection's model to tune the
    index for text queries; with this encoder they become text-like queries of the generated
    world (and the model probe stays the same between build and search).
    """

    def __init__(self, n_rows: int, *, seed: int = 0, params: HardParams = HardParams(),
                 model_name: str = "synthetic-hard") -> None:
        self._world = _World.make(n_rows, params, seed)
        self._seed = seed
        self.model_name = model_name
        self.device = "cpu"
        self.precision = "source"

    @property
    def dim(self) -> int:
        return self._world.p.dim

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        out = []
        for text in texts:
            digest = int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")
            out.append(self._world.texts(1, np.random.default_rng([self._seed, 7, digest]))[0])
        return np.stack(out) if out else np.zeros((0, self.dim), np.float32)


def data_statistics(vectors: np.ndarray, clusters: np.ndarray, image_queries: np.ndarray,
                    text_queries: np.ndarray, sample: int = 200, k: int = 10) -> dict[str, float]:
    """What makes the data hard, in numbers (printed by bench_search beside its figures).

    At 100k rows with the defaults: random pairs at cosine ~0.5, an image query's best row ~0.9,
    a text query's best ~0.3 with its tenth at nearly the same score; a text query's top ten
    come from more clusters than an image query's.
    """
    import faiss

    rng = np.random.default_rng(0)
    n = len(vectors)
    a, b = rng.integers(0, n, 2000), rng.integers(0, n, 2000)
    pair = float(np.mean(np.einsum("ij,ij->i", np.asarray(vectors[a]), np.asarray(vectors[b]))))
    out = {"random_pair_cosine": pair}
    for name, qs in (("image", image_queries[:sample]), ("text", text_queries[:sample])):
        scores, rows = faiss.knn(np.ascontiguousarray(qs), np.asarray(vectors), k, metric=faiss.METRIC_INNER_PRODUCT)
        out[f"{name}_best_cosine"] = float(scores[:, 0].mean())
        out[f"{name}_tenth_cosine"] = float(scores[:, k - 1].mean())
        out[f"{name}_clusters_in_top{k}"] = float(np.mean([len(set(clusters[r].tolist())) for r in rows]))
    return out


def save_params(folder: Path, n: int, seed: int, params: HardParams) -> None:
    (Path(folder) / "hard_data.json").write_text(json.dumps({"n": n, "seed": seed, **asdict(params)}, indent=2))
