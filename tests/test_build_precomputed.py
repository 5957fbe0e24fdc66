"""`imagesearch build SOURCE --embeddings-column NAME --model MODEL`: collections from vectors a
source already holds, without re-embedding; and every way such a column can be unusable."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from scripts.build import build_collection
from scripts.build_cli import main
from search_core import layout
from search_core.collection import Collection
from search_core.encoder import Encoder
from search_core.errors import BuildError
from search_core.search import SearchService
from tests.fixtures.images import draw_image

DIM = 32          # the tiny CLIP's embedding size
N = 300


def png(seed: int) -> bytes:
    buf = io.BytesIO()
    draw_image(seed, (24, 24)).save(buf, "PNG")
    return buf.getvalue()


def source_rows(n: int = N, dim: int = DIM, seed: int = 0) -> dict:
    """n rows: vectors of any length (not unit), BL-style names with years in reverse row order,
    a curated caption column, and an image only on every third row."""
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, dim)).astype(np.float32) * rng.uniform(0.5, 3.0, (n, 1)).astype(np.float32)
    return {
        "embeddings": vectors.tolist(),
        "file_name": [f"{i:09d}_0_000001_1_[Book {i}]_{1900 - i % 50}.jpg" for i in range(n)],
        "caption": [f"caption {i}" for i in range(n)],
        "image": [{"bytes": png(i), "path": None} if i % 3 == 0 else None for i in range(n)],
    }


def features(value: str = "float32") -> datasets.Features:
    return datasets.Features({"embeddings": datasets.List(datasets.Value(value)),
                              "file_name": datasets.Value("string"), "caption": datasets.Value("string"),
                              "image": datasets.Image()})


def save(tmp_path: Path, rows: dict, name: str = "src", feats: datasets.Features | None = None) -> Path:
    folder = tmp_path / name
    datasets.Dataset.from_dict(rows, features=feats or features()).save_to_disk(str(folder))
    return folder


def build(source: Path | str, out: Path, tiny_clip: Path, **kwargs):
    return build_collection(str(source), out, model=str(tiny_clip), device="cpu", progress=False,
                            embeddings_column="embeddings", **kwargs)


@pytest.fixture(scope="module")
def encoder(tiny_clip: Path) -> Encoder:
    """The tiny CLIP loaded once, handed to builds that are not about loading the model."""
    return Encoder.load(str(tiny_clip), device="cpu")


@pytest.fixture(scope="module")
def old_collection(tmp_path_factory: pytest.TempPathFactory, tiny_clip: Path, encoder: Encoder) -> Path:
    """A collection built once, copied to --out by tests that must leave it untouched."""
    tmp = tmp_path_factory.mktemp("old")
    build(save(tmp, source_rows(30), "first"), tmp / "out", tiny_clip, encoder=encoder)
    return tmp / "out"


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory, tiny_clip: Path):
    """A source with precomputed vectors, and the collection built from it with a tuned IVF index."""
    tmp = tmp_path_factory.mktemp("precomputed")
    rows = source_rows()
    src = save(tmp, rows)
    summary = build(src, tmp / "out", tiny_clip, index="IVF8,SQ8")
    return rows, summary, tmp / "out"


def test_vectors_are_the_source_column_normalised_in_year_order(good):
    """embeddings.npy row i is the source vector of the dataset's row i, scaled to unit length."""
    rows, summary, out = good
    ds = datasets.load_from_disk(str(out / layout.DATASET_DIR))
    emb = np.load(out / layout.EMBEDDINGS)
    source = np.asarray(rows["embeddings"], np.float32)
    by_name = {name: i for i, name in enumerate(rows["file_name"])}
    order = [by_name[name] for name in ds["file_name"][:]]
    expected = source[order] / np.linalg.norm(source[order], axis=1, keepdims=True)
    np.testing.assert_allclose(emb, expected, rtol=1e-5, atol=1e-6)
    assert ds["year"][:] == sorted(ds["year"][:]) and summary.rows == N and summary.embedded == 0


def test_metadata_columns_are_kept_and_rows_without_image_are_null(good):
    """Curated columns come along; a row without an image has image None, the others keep their bytes."""
    rows, _, out = good
    ds = datasets.load_from_disk(str(out / layout.DATASET_DIR)).cast_column("image", datasets.Image(decode=False))
    by_name = {name: i for i, name in enumerate(rows["file_name"])}
    for row in ds.select(range(0, N, 7)):
        i = by_name[row["file_name"]]
        assert row["caption"] == rows["caption"][i]
        assert (row["image"] is None) == (i % 3 != 0)
        if row["image"] is not None:
            assert row["image"]["bytes"] == rows["image"][i]["bytes"]
    assert "embeddings" not in ds.column_names


def test_manifest_records_where_the_vectors_came_from(good, tiny_clip: Path):
    """The manifest names the column, says the build did not embed, and carries both recalls."""
    _, _, out = good
    m = layout.Manifest.read(out)
    assert (m.embeddings_column, m.precision, m.model, m.rows) == ("embeddings", "source", str(tiny_clip), N)
    assert m.index.spec == "IVF8,SQ8" and "nprobe" in m.index.params
    assert m.index.recall_at_10 >= 0.97 and m.index.text_recall_at_10 >= 0.97


def test_collection_searches_with_the_named_model(good, tiny_clip: Path):
    """The collection opens with its model and a text search returns hits with metadata."""
    _, _, out = good
    service = SearchService(Collection.open(out), Encoder.load(str(tiny_clip), device="cpu"))
    page = service.search("a ship", k=5)
    assert len(page.hits) == 5 and all(h.file_name.endswith(".jpg") and h.year for h in page.hits)


def test_parquet_file_source(tmp_path: Path, tiny_clip: Path, encoder: Encoder):
    """A Parquet file with an embeddings column and no image column at all builds the same way."""
    rows = source_rows(40)
    table = pa.table({"embeddings": rows["embeddings"], "file_name": rows["file_name"],
                      "caption": rows["caption"]})
    pq.write_table(table, tmp_path / "vectors.parquet")
    summary = build(tmp_path / "vectors.parquet", tmp_path / "out", tiny_clip, encoder=encoder)
    ds = datasets.load_from_disk(str(tmp_path / "out" / layout.DATASET_DIR))
    assert summary.rows == 40 and ds["image"][:] == [None] * 40
    assert sorted(ds["caption"][:]) == sorted(rows["caption"])


def test_fixed_size_float16_vectors(tmp_path: Path, tiny_clip: Path, encoder: Encoder):
    """Fixed-size lists of float16 (as many Hub datasets store them) are read and widened."""
    rows = source_rows(30)
    vectors = np.asarray(rows["embeddings"], np.float16)
    table = pa.table({"embeddings": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), DIM),
                      "file_name": rows["file_name"]})
    pq.write_table(table, tmp_path / "v.parquet")
    build(tmp_path / "v.parquet", tmp_path / "out", tiny_clip, encoder=encoder)
    emb = np.load(tmp_path / "out" / layout.EMBEDDINGS)
    assert emb.dtype == np.float32 and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)


def broken(kind: str) -> tuple[dict, datasets.Features | None, str]:
    """Source rows broken one way, and the message the build must give."""
    rows = source_rows(40)
    if kind == "wrong dimension":
        rows["embeddings"] = np.ones((40, DIM * 2), np.float32).tolist()
        return rows, None, rf"holds {DIM * 2}-dimensional vectors, but the model .* gives {DIM}"
    if kind == "NaN rows":
        for i in (5, 17):
            rows["embeddings"][i][3] = float("nan")
        return rows, None, "2 rows of column 'embeddings' hold NaN, infinite .*first: source row 5, 000000005_"
    if kind == "infinite row":
        rows["embeddings"][9][0] = float("inf")
        return rows, None, "1 row of column 'embeddings' holds NaN, infinite .*source row 9"
    if kind == "zero row":
        rows["embeddings"][11] = [0.0] * DIM
        return rows, None, "1 row .* is a zero vector"
    if kind == "row without vector":
        rows["embeddings"][12] = None
        return rows, None, "1 row of column 'embeddings' has no vector .*source row 12"
    if kind == "uneven lengths":
        rows["embeddings"][20] = rows["embeddings"][20][:-1]
        return rows, None, f"1 row .* another length than the model's {DIM} .*source row 20, .*{DIM - 1} values"
    if kind == "missing column":
        rows["vectors"] = rows.pop("embeddings")
        feats = features()
        feats["vectors"] = feats.pop("embeddings")
        return rows, feats, "has no column 'embeddings' .*columns: .*vectors"
    if kind == "not numbers":
        rows["embeddings"] = ["a"] * 40
        feats = features()
        feats["embeddings"] = datasets.Value("string")
        return rows, feats, "holds string, not vectors of numbers"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["wrong dimension", "NaN rows", "infinite row", "zero row", "row without vector",
                                  "uneven lengths", "missing column", "not numbers"])
def test_unusable_vectors_are_one_error_and_the_old_collection_stays(tmp_path: Path, tiny_clip: Path, kind: str,
                                                                    old_collection: Path, encoder: Encoder):
    """Each problem is one BuildError naming it; the collection already at --out is untouched and
    nothing else is left beside it."""
    out = tmp_path / "out"
    shutil.copytree(old_collection, out)
    before = snapshot(out)
    rows, feats, message = broken(kind)
    with pytest.raises(BuildError, match=message):
        build(save(tmp_path, rows, "bad", feats), out, tiny_clip, encoder=encoder)
    assert snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad", "out"]


def test_cli_builds_and_says_the_vectors_were_not_embedded(tmp_path: Path, tiny_clip: Path, capsys):
    """The command line takes --embeddings-column and reports the column and both recalls."""
    src = save(tmp_path, source_rows(200))
    code = main([str(src), "--out", str(tmp_path / "out"), "--embeddings-column", "embeddings", "--model",
                 str(tiny_clip), "--device", "cpu", "--index", "ivf-sq8", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 0
    assert "from the vectors in column 'embeddings'" in err and "for text prompts" in err


def test_cli_needs_the_model_that_made_the_vectors(tmp_path: Path, capsys):
    """--embeddings-column without --model: one error line, nothing built (no default model guessed)."""
    src = save(tmp_path, source_rows(10))
    capsys.readouterr()
    code = main([str(src), "--out", str(tmp_path / "out"), "--embeddings-column", "embeddings", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1 and err.strip().splitlines() == [err.strip()] and err.startswith("error: --embeddings-column")
    assert not (tmp_path / "out").exists()


def test_cli_error_for_a_missing_column_is_one_line(tmp_path: Path, tiny_clip: Path, capsys):
    """A missing column on the command line: exit 1, one 'error:' line, no traceback."""
    src = save(tmp_path, source_rows(10))
    code = main([str(src), "--out", str(tmp_path / "out"), "--embeddings-column", "clip", "--model",
                 str(tiny_clip), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1 and err.count("error:") == 1 and "Traceback" not in err and "no column 'clip'" in err


def test_folder_of_images_is_refused_for_an_embeddings_column(tmp_path: Path, tiny_clip: Path, sample_images,
                                                              encoder: Encoder):
    """An image folder has no vectors: the error says which sources can have them."""
    with pytest.raises(BuildError, match="needs a saved dataset, a Parquet file or a Hub dataset id"):
        build(sample_images[0], tmp_path / "out", tiny_clip, encoder=encoder)


@pytest.mark.parametrize("rank, spec", [(None, "RR32,IVF7,SQ8_direct_signed"), (4, "PCAR16,IVF7,SQ8_direct_signed")])
def test_auto_index_keeps_every_dimension_unless_half_hold_the_energy(tmp_path, tiny_clip, encoder, monkeypatch,
                                                                    rank, spec):
    """The build measures how much of the vectors' second moment their top half of directions
    holds before choosing PCA codes (scripts.index_choice.PCA_MIN_ENERGY): isotropic vectors keep
    all dimensions, vectors near a low-dimensional subspace get codes of half of them. The size
    thresholds are lowered so 300 rows reach that choice."""
    import scripts.index_choice

    monkeypatch.setattr(scripts.index_choice, "FLAT_MAX_FLOATS", 0)
    monkeypatch.setattr(scripts.index_choice, "PCA_MIN_ROWS", 100)
    rows = source_rows()
    if rank is not None:
        rng = np.random.default_rng(1)
        low = rng.standard_normal((N, rank)) @ rng.standard_normal((rank, DIM)) + 0.02 * rng.standard_normal((N, DIM))
        rows["embeddings"] = low.astype(np.float32).tolist()
    build(save(tmp_path, rows), tmp_path / "out", tiny_clip, encoder=encoder)
    assert Collection.open(tmp_path / "out").manifest.index.spec == spec
