"""Synthetic collections for index-scale benchmarks, built by `imagesearch build` itself.

Two kinds of 512-d unit vectors, no images:
- "hard" (`benchmarks.hard_data`): a continuous CLIP-like manifold with clusters of power-law
  sizes, near-duplicate groups, years that follow content, and image-like and text-like queries.
  The figures that matter for real collections come from this data.
- "easy": the data of anchors/faiss_results.md: n vectors around n/100 random unit centres plus
  Gaussian noise, and held-out image-like queries drawn the same way. Each query's ten nearest
  rows sit around one centre (one IVF list), so any index looks nearly exact here; it is kept
  as a second row to compare with the earlier figures. Years 1700-1899 are drawn at random.

Each is written once as a source dataset with an ``embeddings`` column and built into a
collection with ``build_collection(..., embeddings_column="embeddings")``: exactly the path of
``imagesearch build SOURCE --embeddings-column embeddings``, with the build's own index choice,
tuning and probe-prompt recall. The "model" is a stand-in that maps text to the data's own
text-like vectors (`SyntheticEncoder`). Sources, queries and collections are cached.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import hard_data
from search_core import layout

DIM = 512
PER_CLUSTER = 100
NOISE = 0.6          # norm of the noise added to a unit centre: cosine to the centre ~0.86
YEARS = (1700, 1899)
CHUNK = 100_000
EASY_TEXT_GAP = 1.0      # easy text queries: a centre plus this much of a shared offset direction
EASY_TEXT_NOISE = 0.6    # ... plus noise of this norm: best cosine to the rows ~0.6
KINDS = ("hard", "easy")
# Bump when the generated data changes (sources are then generated again), or when how a
# collection is built from it changes (collections are then rebuilt from the cached sources).
DATA_VERSION = 2
BUILD_VERSION = 3
# Bump when the easy stand-in model's own answers change (easy collections are then rebuilt).
EASY_MODEL_VERSION = 2


@dataclass(frozen=True)
class Synthetic:
    path: Path
    queries: np.ndarray               # float32 [q, dim], image-like, held out
    build_s: float | None             # None when the collection came from the cache
    text_queries: np.ndarray | None = None    # float32 [q, dim], text-like (hard data)
    kind: str = "easy"


# --- the easy data --------------------------------------------------------------------------

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


def _easy_rows(n: int, out: np.ndarray, seed: int) -> np.ndarray:
    """Fill `out` with n easy rows; returns their years."""
    rng = np.random.default_rng(seed)
    centres = _centres(n, rng)
    data_rng = np.random.default_rng(seed + 2)
    for lo in range(0, n, CHUNK):
        hi = min(n, lo + CHUNK)
        out[lo:hi] = _draw(centres, hi - lo, data_rng)
    return data_rng.integers(YEARS[0], YEARS[1] + 1, n)


# --- the stand-in model ---------------------------------------------------------------------

class SyntheticEncoder:
    """The "model" of a synthetic collection, for the build (probe prompts, model probe) and for
    SearchService's model check. Hard data: text -> a text-like vector of the generated world
    (`hard_data.HardTextEncoder`); easy data: text -> one of the data's centres (chosen by the
    text's hash), offset by a fixed "modality gap" direction, plus noise.

    The easy model's probe (layout.MODEL_PROBE_TEXT, which SearchService checks at open) is one
    fixed vector whatever the data size, so easy collections of every size share one stand-in
    model, as collections embedded with one CLIP share it: bench_collections opens two through
    the bot's SharedModels, and bench_filters / bench_duplicates open theirs with it."""

    device = "cpu"
    precision = "source"

    def __init__(self, kind: str = "easy", n_rows: int = 0, seed: int = 0) -> None:
        self.kind = kind
        self.model_name = f"synthetic-{kind}"
        self._hard = hard_data.HardTextEncoder(n_rows, seed=seed) if kind == "hard" else None
        self._centres = _centres(n_rows, np.random.default_rng(seed)) if kind == "easy" and n_rows else None

    @property
    def dim(self) -> int:
        return DIM

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        if self._hard is not None:
            return self._hard.encode_text(texts)
        out = np.empty((len(texts), DIM), np.float32)
        gap = np.random.default_rng(12345).standard_normal(DIM)
        for i, text in enumerate(texts):
            if text == layout.MODEL_PROBE_TEXT:
                out[i] = np.eye(1, DIM, dtype=np.float32)[0]
                continue
            rng = np.random.default_rng(int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little"))
            v = rng.standard_normal(DIM) * EASY_TEXT_NOISE / np.sqrt(DIM) + EASY_TEXT_GAP * gap / np.linalg.norm(gap)
            if self._centres is not None:
                v += self._centres[rng.integers(len(self._centres))]
            out[i] = v / np.linalg.norm(v)
        return out


# --- sources and collections ----------------------------------------------------------------

def _write_source(folder: Path, vectors: np.ndarray, years: np.ndarray) -> None:
    """A saved dataset: British Library style file names (with the year) and the vectors."""
    import pyarrow as pa
    from datasets import Dataset

    n = len(vectors)
    names = pa.array([f"{i:09d}_0_000001_1_[Synthetic]_{int(y)}.jpg" for i, y in enumerate(years.tolist())])
    flat = pa.array(np.asarray(vectors, dtype=np.float32).reshape(-1))
    table = pa.table({"file_name": names, "embeddings": pa.FixedSizeListArray.from_arrays(flat, DIM)})
    Dataset(table).save_to_disk(str(folder), max_shard_size="500MB")
    assert len(table) == n


def synthetic_source(n: int, *, kind: str = "easy", seed: int = 0, queries: int = 1000,
                     rebuild: bool = False, cache: Path | None = None) -> tuple[Path, np.ndarray, np.ndarray | None]:
    """The cached source dataset of n rows and its (image-like, text-like) queries: the first
    `queries` of the cached ones when the cache holds at least that many. Regenerating it for a
    benchmark that asks for fewer (bench_filters, bench_memory after bench_search) also rebuilt
    every collection made from it, minutes each at 1M rows."""
    from benchmarks.common import CACHE

    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    folder = Path(cache or CACHE) / f"source-{kind}-{n}-seed{seed}-v{DATA_VERSION}"
    stamp = folder / "synthetic.json"
    if rebuild or not stamp.is_file() or json.loads(stamp.read_text()).get("queries", 0) < queries:
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        vectors = np.lib.format.open_memmap(folder / "vectors.tmp.npy", mode="w+", dtype=np.float32, shape=(n, DIM))
        if kind == "hard":
            data = hard_data.generate(n, queries=queries, seed=seed, out=vectors)
            years, image_q, text_q = data.years, data.image_queries, data.text_queries
            np.save(folder / "duplicate_group.npy", data.duplicate_group)
        else:
            years, image_q, text_q = _easy_rows(n, vectors, seed), queries_for(n, queries, seed), None
        _write_source(folder / "dataset", vectors, years)
        del vectors
        (folder / "vectors.tmp.npy").unlink()
        np.save(folder / "image_queries.npy", image_q)
        if text_q is not None:
            np.save(folder / "text_queries.npy", text_q)
        stamp.write_text(json.dumps({"kind": kind, "n": n, "seed": seed, "queries": queries,
                                     "version": DATA_VERSION}))
    text = folder / "text_queries.npy"
    return (folder / "dataset", np.load(folder / "image_queries.npy")[:queries],
            np.load(text)[:queries] if text.is_file() else None)


def synthetic_collection(n: int, folder: Path | None = None, *, kind: str = "easy", seed: int = 0,
                         queries: int = 1000, rebuild: bool = False, index: str = "auto") -> Synthetic:
    """A collection of n synthetic rows at `folder` (default: the cache's, shared by the
    benchmarks), built by `build_collection` from the cached source's embeddings column and
    reused while the data and the index choice are unchanged."""
    from benchmarks.common import CACHE
    from scripts.build import build_collection
    from scripts.index_choice import resolve_index_spec

    folder = Path(folder) if folder is not None else CACHE / f"synthetic-{kind}-{n}"
    source, image_q, text_q = synthetic_source(n, kind=kind, seed=seed, queries=queries, rebuild=rebuild)
    # "index" is the size-based choice, a cache key: the build itself may keep every dimension
    # where the data's spectrum is flat (scripts/index_choice.py, PCA_MIN_ENERGY), as the easy 1M
    # collection does; its manifest says what was built.
    want = {"kind": kind, "n": n, "seed": seed, "version": DATA_VERSION, "build": BUILD_VERSION,
            "index": resolve_index_spec(index, n, DIM)}
    if kind == "easy":
        want["model"] = EASY_MODEL_VERSION
    stamp = folder.with_name(folder.name + ".json")     # beside it: a collection holds only its own files
    if not rebuild and (folder / layout.MANIFEST).is_file() and stamp.is_file() and json.loads(stamp.read_text()) == want:
        return Synthetic(folder, image_q, None, text_q, kind)
    started = time.perf_counter()
    build_collection(str(source), folder, model=f"synthetic-{kind}", embeddings_column="embeddings",
                     index=index, progress=False, encoder=SyntheticEncoder(kind, n, seed))  # type: ignore[arg-type]
    stamp.write_text(json.dumps(want))
    return Synthetic(folder, image_q, time.perf_counter() - started, text_q, kind)


def encoder_for(collection: Any) -> SyntheticEncoder:
    """The stand-in model a synthetic collection was built with (from its manifest)."""
    manifest = collection.manifest
    kind = manifest.model.removeprefix("synthetic-")
    return SyntheticEncoder(kind, manifest.rows)
