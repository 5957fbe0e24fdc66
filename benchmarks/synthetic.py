"""Synthetic collections for index-scale benchmarks: clustered 512-d unit vectors, no images.

Like anchors/faiss_results.md: n vectors around n/100 random unit centres plus Gaussian noise,
L2-normalised, and held-out queries drawn the same way (so each query has a true neighbourhood,
as a CLIP query has). Rows get years 1700-1899 at random and are then sorted by year, as
`imagesearch build` sorts them, so a year range is a row range independent of the clusters.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from search_core import layout
from search_core.integrity import file_checksums

DIM = 512
PER_CLUSTER = 100
NOISE = 0.6          # norm of the noise added to a unit centre: cosine to the centre ~0.86
YEARS = (1700, 1899)
CHUNK = 100_000


@dataclass(frozen=True)
class Synthetic:
    path: Path
    queries: np.ndarray      # float32 [q, dim], unit, held out
    build_s: float | None    # None when the collection came from the cache


def _centres(n: int, rng: np.random.Generator) -> np.ndarray:
    c = rng.standard_normal((max(1, n // PER_CLUSTER), DIM), dtype=np.float32)
    return c / np.linalg.norm(c, axis=1, keepdims=True)


def _draw(centres: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    x = centres[rng.integers(0, len(centres), n)]
    x = x + rng.standard_normal((n, DIM), dtype=np.float32) * (NOISE / np.sqrt(DIM))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def queries_for(n: int, q: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = _centres(n, rng)
    return _draw(centres, q, np.random.default_rng(seed + 1))


def synthetic_collection(n: int, folder: Path, *, seed: int = 0, queries: int = 1000,
                         rebuild: bool = False) -> Synthetic:
    """A collection of n synthetic rows at folder, built with `imagesearch build`'s own index
    choice and index code (scripts.index_choice / scripts.indexing), reused if already there."""
    from scripts.index_choice import choose_index
    from scripts.indexing import build_index

    folder = Path(folder)
    qs = queries_for(n, queries, seed)
    if (folder / layout.MANIFEST).is_file() and not rebuild:
        return Synthetic(folder, qs, None)
    if folder.exists():
        shutil.rmtree(folder)
    tmp = folder.with_name(folder.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)

    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    centres = _centres(n, rng)
    data_rng = np.random.default_rng(seed + 2)
    emb = np.lib.format.open_memmap(tmp / layout.EMBEDDINGS, mode="w+", dtype=np.float32, shape=(n, DIM))
    for lo in range(0, n, CHUNK):
        hi = min(n, lo + CHUNK)
        emb[lo:hi] = _draw(centres, hi - lo, data_rng)
    emb.flush()
    years = np.sort(data_rng.integers(YEARS[0], YEARS[1] + 1, n))   # rows are i.i.d.: sorting = relabelling

    from datasets import Dataset

    names = [f"{i:09d}_0_000001_1_[Synthetic]_{y}.jpg" for i, y in enumerate(years.tolist())]
    Dataset.from_dict({"file_name": names, "year": years.tolist()}).save_to_disk(str(tmp / layout.DATASET_DIR))

    import faiss

    spec = choose_index(n, DIM)
    index, info = build_index(np.asarray(emb), spec, seed=seed)
    faiss.write_index(index, str(tmp / layout.INDEX))
    probe = np.zeros(DIM, np.float32)
    probe[0] = 1.0
    manifest = layout.Manifest(format_version=layout.FORMAT_VERSION, model="synthetic", embedding_dim=DIM,
                               metric="ip", rows=n, index=info, source="benchmarks.synthetic",
                               built_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                               model_probe=probe.tolist(), checksums=file_checksums(tmp))
    manifest.write(tmp)
    (tmp / "synthetic.json").write_text(json.dumps({"seed": seed, "noise": NOISE, "per_cluster": PER_CLUSTER}))
    tmp.rename(folder)
    return Synthetic(folder, qs, time.perf_counter() - started)


class ProbeEncoder:
    """Stands in for CLIP where only stored vectors are searched: it answers the model probe
    that SearchService checks at open. Query encoding is measured in bench_encode."""

    model_name = "synthetic"

    def encode_text(self, texts: list[str]) -> np.ndarray:
        probe = np.zeros((len(texts), DIM), np.float32)
        probe[:, 0] = 1.0
        return probe
