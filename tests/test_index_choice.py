"""scripts.index_choice and scripts.indexing: which index, and that an approximate one keeps its recall."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

import scripts.indexing
from scripts.index_choice import PCA_MIN_ENERGY, choose_index, ivf_nlist, resolve_index_spec
from scripts.indexing import TARGET_RECALL, build_index, projection_energy, tune
from search_core.errors import BuildError


@pytest.mark.parametrize("n, dim, spec", [
    (1, 512, "Flat"),
    (24, 32, "Flat"),
    (5_000, 512, "Flat"),
    (5_001, 512, "RR512,IVF128,SQ8_direct_signed"),        # lists capped so each gets 39 training points
    (10_000, 512, "RR512,IVF256,SQ8_direct_signed"),
    (100_000, 512, "RR512,IVF1264,SQ8_direct_signed"),
    (199_999, 512, "RR512,IVF1788,SQ8_direct_signed"),
    (200_000, 512, "PCAR256,IVF1788,SQ8_direct_signed"),   # from PCA_MIN_ROWS: codes of half the dimensions
    (1_000_000, 512, "PCAR256,IVF4000,SQ8_direct_signed"),   # the benchmarked 1M configuration
    (50_000, 32, "Flat"),               # exact cost is rows x dim: small vectors stay exact longer
    (200_000, 768, "PCAR384,IVF1788,SQ8_direct_signed"),
])
def test_choose_index_table(n, dim, spec):
    """Exact Flat while rows x dim is small, then IVF with 4*sqrt(n) lists over int8 codes, of
    half the dimensions for large collections."""
    assert choose_index(n, dim) == spec


def test_pca_codes_only_where_the_top_directions_hold_the_energy():
    """PCAR drops half the directions: only where they hold PCA_MIN_ENERGY of the second moment
    (CLIP-like spectra); on flatter data every dimension is kept (RR). The energy is measured only
    when PCAR is in question, and for half the dimensions."""
    asked: list[int] = []

    def energy(kept: float):
        def measure(dim: int) -> float:
            asked.append(dim)
            return kept
        return measure

    assert choose_index(1_000_000, 512, energy(PCA_MIN_ENERGY)) == "PCAR256,IVF4000,SQ8_direct_signed"
    assert choose_index(1_000_000, 512, energy(PCA_MIN_ENERGY - 0.01)) == "RR512,IVF4000,SQ8_direct_signed"
    assert resolve_index_spec("auto", 1_000_000, 512, energy(0.5)) == "RR512,IVF4000,SQ8_direct_signed"
    assert asked == [256, 256, 256]
    assert choose_index(100_000, 512, energy(0.1)) == "RR512,IVF1264,SQ8_direct_signed"
    assert resolve_index_spec("ivf-pca-int8", 1_000_000, 512, energy(0.1)).startswith("PCAR256,")   # asked for by name
    assert asked == [256, 256, 256]


def test_projection_energy_tells_a_decaying_spectrum_from_a_flat_one():
    """The share of the second moment in the top directions: near 1 for vectors on a low-dimensional
    subspace plus a little noise, near dim/d for isotropic ones."""
    rng = np.random.default_rng(0)
    flat = rng.standard_normal((4000, 64)).astype(np.float32)
    low_rank = (rng.standard_normal((4000, 8)) @ rng.standard_normal((8, 64))
                + 0.05 * rng.standard_normal((4000, 64))).astype(np.float32)
    assert projection_energy(low_rank, 32) > 0.99
    assert 0.5 < projection_energy(flat, 32) < 0.7
    assert projection_energy(flat, 64) == pytest.approx(1.0)


@pytest.mark.parametrize("n, dim", [(0, 512), (10, 0), (-1, 8)])
def test_choose_index_refuses_empty(n, dim):
    """There is no index for zero vectors; the caller must report an empty source first."""
    with pytest.raises(ValueError):
        choose_index(n, dim)


def test_ivf_nlist_leaves_enough_training_points():
    """Each IVF list gets at least 39 training points (FAISS's k-means minimum), and at least 1 list."""
    assert ivf_nlist(1000) == 25
    assert ivf_nlist(10) == 1


@pytest.mark.parametrize("option, spec", [
    ("auto", "Flat"), ("flat", "Flat"), ("FLAT", "Flat"), ("sqfp16", "SQfp16"), ("hnsw", "HNSW32"),
    ("ivf-sq8", "IVF25,SQ8"), ("ivf-int8", "RR512,IVF25,SQ8_direct_signed"),
    ("ivf-pca-int8", "PCAR256,IVF25,SQ8_direct_signed"), ("IVF16,Flat", "IVF16,Flat"),
])
def test_index_option_names(option, spec):
    """--index names map to factory strings; anything else passes through to FAISS as is."""
    assert resolve_index_spec(option, 1000, 512) == spec


def clustered_unit_vectors(n: int, dim: int, clusters: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim))
    x = centres[rng.integers(0, clusters, n)] + 0.35 * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("spec, knob", [("IVF64,SQ8", "nprobe"), ("HNSW16", "efSearch")])
def test_approximate_index_is_tuned_to_target_recall(spec, knob):
    """The tuned setting is stored, gives the recorded recall >= 0.97, and the index uses it."""
    data = clustered_unit_vectors(3200, 64, 30)
    x, held_out = data[:3000], data[3000:]
    index, info = build_index(x, spec)
    assert set(info.params) == {knob}
    assert info.recall_at_10 >= TARGET_RECALL

    # Re-measure independently: held-out queries, the stored setting applied to a fresh copy.
    copy = faiss.deserialize_index(faiss.serialize_index(index))
    faiss.ParameterSpace().set_index_parameter(copy, knob, info.params[knob])
    exact = faiss.IndexFlatIP(64)
    exact.add(x)
    _, truth = exact.search(held_out, 10)
    _, found = copy.search(held_out, 10)
    recall = np.mean([len(set(t) & set(f)) / 10 for t, f in zip(truth, found)])
    assert recall >= TARGET_RECALL - 0.02


def test_nprobe_is_the_smallest_that_reaches_the_target():
    """One step lower than the chosen nprobe misses the target (tuning does not overspend)."""
    x = clustered_unit_vectors(3000, 64, 30, seed=1)
    index, info = build_index(x, "IVF64,SQ8")
    nprobe = info.params["nprobe"]
    if nprobe == 1:
        pytest.skip("target already reached with nprobe=1 on this data")
    exact = faiss.IndexFlatIP(64)
    exact.add(x)
    q = x[:500]
    _, truth = exact.search(q, 10)
    faiss.ParameterSpace().set_index_parameter(index, "nprobe", nprobe // 2)
    _, found = index.search(q, 10)
    assert np.mean([len(set(t) & set(f)) / 10 for t, f in zip(truth, found)]) < TARGET_RECALL + 0.01


def test_flat_index_is_exact_with_row_ids():
    """Flat has no recall to report, metric inner product, and ids equal row numbers."""
    x = clustered_unit_vectors(200, 16, 5)
    index, info = build_index(x, "Flat")
    assert info.recall_at_10 is None and info.params == {}
    assert index.metric_type == faiss.METRIC_INNER_PRODUCT
    scores, ids = index.search(x[[7, 150]], 1)
    assert ids[:, 0].tolist() == [7, 150]
    assert np.allclose(scores[:, 0], 1.0, atol=1e-5)


def test_unknown_factory_string_is_a_build_error():
    """A spec FAISS cannot parse is one clear BuildError, not a SWIG traceback."""
    with pytest.raises(BuildError, match="does not understand"):
        build_index(clustered_unit_vectors(50, 8, 2), "NoSuchIndex99")


def test_tuning_does_not_count_a_query_finding_itself(monkeypatch):
    """A query row finding itself is no hit: an index that finds nothing else scores recall 0.

    Each IVF list holds one row (the centroids are the rows), so nprobe=1 returns only the
    query's own row; target 0 makes tune stop at that first setting and report its recall.
    """
    x = clustered_unit_vectors(200, 16, 5)
    quantizer = faiss.IndexFlatIP(16)
    quantizer.add(x)
    index = faiss.IndexIVFFlat(quantizer, 16, len(x), faiss.METRIC_INNER_PRODUCT)
    index.add(x)
    monkeypatch.setattr(scripts.indexing, "TARGET_RECALL", 0.0)
    monkeypatch.setattr(scripts.indexing, "TUNING_MARGIN", 0.0)
    tuning = tune(index, x)
    assert tuning.params == {"nprobe": 1}
    assert tuning.image_recall == 0.0


def test_manifest_of_an_older_build_still_reads():
    """A manifest written before text recall, re-rank depth and precomputed vectors were recorded
    opens with those fields unknown (None), not as an error."""
    from search_core.layout import Manifest

    old = {"format_version": 1, "model": "m", "embedding_dim": 4, "metric": "ip", "rows": 2,
           "index": {"spec": "IVF1,SQ8", "params": {"nprobe": 1}, "recall_at_10": 0.99},
           "source": "s", "built_at": "2024-01-01T00:00:00Z", "model_probe": [1, 0, 0, 0]}
    manifest = Manifest.from_dict(old)
    assert manifest.index.recall_at_10 == 0.99
    assert (manifest.index.text_recall_at_10, manifest.index.rerank, manifest.embeddings_column) == (None, None, None)


def text_like(vectors: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Queries off the data: a sum of two random rows plus a shared offset, as CLIP text sits apart
    from the images (the modality gap) and matches several of their clusters at once."""
    rng = np.random.default_rng(seed)
    offset = rng.normal(size=vectors.shape[1])
    q = vectors[rng.integers(0, len(vectors), n)] + vectors[rng.integers(0, len(vectors), n)] + 1.5 * offset / np.linalg.norm(offset)
    return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)


def test_tuning_holds_the_target_for_text_queries_too():
    """With text queries the tuned nprobe is at least the image-only one, both recalls are
    recorded, and the text recall holds when re-measured on other text queries."""
    x = clustered_unit_vectors(4000, 32, 40, seed=2)
    _, images_only = build_index(x, "IVF64,SQ8")
    index, info = build_index(x, "IVF64,SQ8", text_queries=text_like(x, 300, seed=1))
    assert info.params["nprobe"] >= images_only.params["nprobe"]
    assert info.recall_at_10 >= TARGET_RECALL and info.text_recall_at_10 >= TARGET_RECALL
    assert images_only.text_recall_at_10 is None

    held_out = text_like(x, 300, seed=7)
    _, truth = faiss.knn(held_out, x, 10, metric=faiss.METRIC_INNER_PRODUCT)
    _, found = index.search(held_out, 20)
    from search_core.rerank import rerank

    top = [rerank(x, q, c, 10)[1] for q, c in zip(held_out, found)]
    assert np.mean([len(set(t) & set(f)) / 10 for t, f in zip(truth, top)]) >= TARGET_RECALL - 0.02


def test_int8_index_is_scaled_and_keeps_recall():
    """RR + SQ8_direct_signed: the build scales the rotation so codes fit int8 (no wrap-around),
    and the index finds what exact search finds."""
    x = clustered_unit_vectors(3000, 64, 30, seed=4)
    index, info = build_index(x, "RR64,IVF32,SQ8_direct_signed")
    transform = faiss.downcast_index(index)
    rotation = faiss.downcast_VectorTransform(transform.chain.at(0))
    rotated = rotation.apply(x)
    assert 127 / 1.3 < np.abs(rotated).max() <= 127
    matrix = faiss.vector_to_array(rotation.A).reshape(64, 64)
    scale = np.linalg.norm(matrix[0])
    assert np.allclose(matrix @ matrix.T, scale ** 2 * np.eye(64), atol=1e-3 * scale ** 2)   # a scaled rotation
    assert info.recall_at_10 >= TARGET_RECALL


def test_direct_int8_codes_without_a_rotation_are_refused():
    """Direct int8 codes need the rotation that carries their scale: a clear BuildError otherwise."""
    with pytest.raises(BuildError, match="need a leading RR16 .* or PCAR"):
        build_index(clustered_unit_vectors(500, 16, 5), "IVF8,SQ8_direct_signed")


def test_pca_int8_index_projects_scales_and_keeps_recall():
    """PCAR<k> + SQ8_direct_signed: the build fits an uncentred projection onto the rows' top k
    directions (then a random rotation of them), scaled so codes fit int8; search's exact
    re-rank brings recall back to the target."""
    rng = np.random.default_rng(5)
    spectrum = np.linspace(3.0, 0.05, 64).astype(np.float32)        # most variance in few directions
    x = clustered_unit_vectors(3000, 64, 30, seed=5) * spectrum + 0.3 * rng.normal(size=(3000, 64)).astype(np.float32)
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    index, info = build_index(x, "PCAR32,IVF32,SQ8_direct_signed")
    transform = faiss.downcast_VectorTransform(faiss.downcast_index(index).chain.at(0))
    assert (transform.d_in, transform.d_out) == (64, 32)
    projected = transform.apply(x)
    assert 127 / 1.3 < np.abs(projected).max() <= 127                   # int8 range, no wrap-around
    matrix = faiss.vector_to_array(transform.A).reshape(32, 64)
    scale = np.linalg.norm(matrix[0])
    assert np.allclose(matrix @ matrix.T, scale ** 2 * np.eye(32), atol=1e-3 * scale ** 2)   # orthonormal rows
    assert np.allclose(faiss.vector_to_array(transform.b), 0)          # not centred: ranking kept
    top = np.linalg.eigh(x.T.astype(np.float64) @ x)[1][:, -32:]       # the kept directions are the top ones
    assert np.linalg.norm(matrix / scale @ top, axis=1).min() > 0.99
    assert info.recall_at_10 >= TARGET_RECALL


def test_many_ivf_lists_train_by_two_level_kmeans(monkeypatch):
    """An IVF with TWO_LEVEL_MIN_LISTS lists or more gets its coarse quantizer from two-level
    k-means (flat k-means over every list costs ~30 min at 16,384 lists and 1M rows)."""
    calls = []
    from faiss.contrib import clustering

    real = clustering.two_level_clustering

    def spy(*args, **kwargs):
        calls.append(args[1:3])
        return real(*args, **kwargs)

    monkeypatch.setattr(clustering, "two_level_clustering", spy)
    monkeypatch.setattr(scripts.indexing, "TWO_LEVEL_MIN_LISTS", 64)
    x = clustered_unit_vectors(64 * 64, 32, 40, seed=6)
    index = scripts.indexing.train_and_add(x, "IVF64_HNSW8,SQ8")
    assert calls == [(8, 64)]
    assert index.ntotal == len(x) and faiss.extract_index_ivf(index).quantizer.ntotal == 64
    small = scripts.indexing.train_and_add(x, "IVF32,SQ8")                # below the threshold: plain k-means
    assert calls == [(8, 64)] and small.ntotal == len(x)


def test_tuning_aims_above_the_target_by_the_margin(monkeypatch):
    """The probe prompts are a sample: tuning stops only once both recalls reach the target plus
    TUNING_MARGIN, so unseen queries still get the target."""
    data = clustered_unit_vectors(3000, 32, 3, seed=8)     # wide clusters: IVF needs many lists
    index, _ = build_index(data, "IVF64,SQ8")
    monkeypatch.setattr(scripts.indexing, "TUNING_MARGIN", 0.0)
    plain = tune(index, data)
    monkeypatch.setattr(scripts.indexing, "TUNING_MARGIN", 0.02)
    careful = tune(index, data)
    assert plain.worst < TARGET_RECALL + 0.02          # the margin matters on this data
    assert careful.worst >= TARGET_RECALL + 0.02
    assert careful.params["nprobe"] > plain.params["nprobe"]
