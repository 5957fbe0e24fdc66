"""scripts.build.build_collection: every source kind, the collection it writes, bad files,
atomic replacement, and --push-to-hub up to the upload call."""

from __future__ import annotations

import io
import json
import shutil
import struct
import zipfile
import zlib
from pathlib import Path

import datasets
import faiss
import numpy as np
import pytest

from scripts.build import build_collection
from search_core import layout
from search_core.encoder import Encoder
from search_core.errors import BuildError
from tests.fixtures.images import draw_image


def build(source, out: Path, tiny_clip: Path, **kwargs):
    return build_collection(str(source), out, model=str(tiny_clip), device="cpu", progress=False, **kwargs)


def jpeg_bytes(seed: int) -> bytes:
    buf = io.BytesIO()
    draw_image(seed).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def encoder(tiny_clip: Path) -> Encoder:
    """Loaded as the build loads it (precision auto), so vectors must match exactly."""
    return Encoder.load(str(tiny_clip), device="cpu", precision="auto")


# --- The collection written from the imagefolder sample (conftest's collection_dir) -------------

def test_collection_has_every_layout_file(collection_dir: Path):
    """manifest.json, dataset/, embeddings.npy, index.faiss and skipped.jsonl are all written."""
    for name in (layout.MANIFEST, layout.DATASET_DIR, layout.EMBEDDINGS, layout.INDEX, layout.SKIPPED):
        assert (collection_dir / name).exists(), name


def test_manifest_describes_the_build(collection_dir: Path, tiny_clip: Path, encoder: Encoder):
    """The manifest names the model, dim, rows, metric and holds the model's probe vector."""
    m = layout.Manifest.read(collection_dir)
    assert (m.format_version, m.model, m.metric, m.rows, m.embedding_dim, m.skipped) == (
        layout.FORMAT_VERSION, str(tiny_clip), "ip", 24, encoder.dim, 0)
    probe = encoder.encode_text([layout.MODEL_PROBE_TEXT])[0]
    assert np.allclose(probe, m.model_probe, atol=1e-6)
    assert m.index.spec == "Flat"
    assert set(m.checksums) >= {layout.EMBEDDINGS, layout.INDEX, layout.SKIPPED}


def test_rows_are_sorted_by_year_with_bl_metadata(collection_dir: Path, sample_images):
    """Rows ascend by year and carry the fields parsed from the BL file names."""
    ds = datasets.load_from_disk(str(collection_dir / layout.DATASET_DIR))
    years = ds["year"][:]
    assert years == sorted(years) and set(years) == {1850, 1870, 1890, 1900}
    by_name = {s.path.name: s for s in sample_images[1]}
    for row in ds.select_columns(["file_name", "year", "title", "book_id", "page"]):
        expected = by_name[row["file_name"]]
        assert (row["year"], row["title"], row["book_id"]) == (expected.year, expected.title, expected.book_id)


def test_dataset_is_self_contained(collection_dir: Path, tmp_path: Path):
    """Image bytes are stored in the dataset, so it still opens with the source images gone."""
    copy = tmp_path / "moved"
    shutil.copytree(collection_dir, copy)
    ds = datasets.load_from_disk(str(copy / layout.DATASET_DIR)).cast_column("image", datasets.Image(decode=False))
    assert all(item["bytes"] for item in ds["image"])


def test_embeddings_are_the_model_vectors_of_each_row(collection_dir: Path, encoder: Encoder):
    """Row i of embeddings.npy is the unit-length model embedding of dataset row i's image."""
    ds = datasets.load_from_disk(str(collection_dir / layout.DATASET_DIR))
    emb = np.load(collection_dir / layout.EMBEDDINGS)
    assert emb.dtype == np.float32 and emb.shape == (len(ds), encoder.dim)
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    expected = encoder.encode_images([ds[i]["image"].convert("RGB") for i in (0, 11, 23)])
    assert np.allclose(emb[[0, 11, 23]], expected, atol=1e-4)


def test_index_ids_are_row_numbers(collection_dir: Path):
    """Searching the index with row i's vector returns id i first (ids = rows, metric ip)."""
    emb = np.load(collection_dir / layout.EMBEDDINGS)
    index = faiss.read_index(str(collection_dir / layout.INDEX))
    assert index.ntotal == len(emb) and index.metric_type == faiss.METRIC_INNER_PRODUCT
    _, ids = index.search(emb, 1)
    assert ids[:, 0].tolist() == list(range(len(emb)))


# --- Source kinds ---------------------------------------------------------------------------

def saved_rows(n: int = 6) -> dict:
    return {"image": [{"bytes": jpeg_bytes(100 + i), "path": None} for i in range(n)],
            "fname": [f"00000000{i}_0_00001{i}_1_[Book {i}]_{1900 - i}.jpg" for i in range(n)],
            "shelfmark": [f"BL {i}" for i in range(n)],
            "vector": [[0.5, 0.5]] * n}


def saved_features() -> datasets.Features:
    return datasets.Features({"image": datasets.Image(), "fname": datasets.Value("string"),
                              "shelfmark": datasets.Value("string"),
                              "vector": datasets.List(datasets.Value("float32"))})


def test_build_from_saved_dataset_keeps_scalar_columns(tmp_path: Path, tiny_clip: Path):
    """A save_to_disk Dataset builds; names come from its fname column; scalar columns are kept."""
    src = tmp_path / "saved"
    datasets.Dataset.from_dict(saved_rows(), features=saved_features()).save_to_disk(str(src))
    summary = build(src, tmp_path / "out", tiny_clip)
    ds = datasets.load_from_disk(str(tmp_path / "out" / layout.DATASET_DIR))
    assert summary.rows == 6
    assert ds["year"][:] == [1895, 1896, 1897, 1898, 1899, 1900]
    assert ds["shelfmark"][:] == [f"BL {i}" for i in range(5, -1, -1)]
    assert "vector" not in ds.column_names


def test_build_from_saved_dataset_dict_takes_train(tmp_path: Path, tiny_clip: Path):
    """A saved DatasetDict with several splits builds from "train"."""
    train = datasets.Dataset.from_dict(saved_rows(4), features=saved_features())
    test = datasets.Dataset.from_dict(saved_rows(2), features=saved_features())
    datasets.DatasetDict({"train": train, "test": test}).save_to_disk(str(tmp_path / "dd"))
    assert build(tmp_path / "dd", tmp_path / "out", tiny_clip).rows == 4


def test_build_from_saved_dataset_dict_takes_its_only_split(tmp_path: Path, tiny_clip: Path):
    """A saved DatasetDict whose one split is not called "train" builds from that split."""
    only = datasets.Dataset.from_dict(saved_rows(3), features=saved_features())
    datasets.DatasetDict({"validation": only}).save_to_disk(str(tmp_path / "dd"))
    assert build(tmp_path / "dd", tmp_path / "out", tiny_clip).rows == 3


def test_build_from_hub_id(tmp_path: Path, tiny_clip: Path, monkeypatch):
    """A Hub id goes to datasets.load_dataset (stubbed here with a local DatasetDict)."""
    calls = []

    def fake_load_dataset(*args, **kwargs):
        calls.append((args, kwargs))
        return datasets.DatasetDict({"train": datasets.Dataset.from_dict(saved_rows(5), features=saved_features())})

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    summary = build("davanstrien/embellishments-sample", tmp_path / "out", tiny_clip)
    assert calls == [(("davanstrien/embellishments-sample",), {})]
    assert summary.rows == 5
    assert layout.Manifest.read(tmp_path / "out").source == "davanstrien/embellishments-sample"


def test_build_from_zip_url(tmp_path: Path, tiny_clip: Path, sample_images, monkeypatch):
    """A zip URL loads as imagefolder with data_files=URL; years come from names and folders."""
    root, images = sample_images
    archive = tmp_path / "sample.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for image in images[:8]:
            z.write(image.path, image.path.relative_to(root).as_posix())
    url = "https://zenodo.org/record/6224034/files/embellishments_sample.zip?download=1"
    real_load_dataset = datasets.load_dataset
    calls = []

    def fake_load_dataset(path, **kwargs):
        calls.append((path, kwargs))
        assert kwargs.pop("data_files") == url
        return real_load_dataset(path, data_files=str(archive), **kwargs)

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    summary = build(url, tmp_path / "out", tiny_clip)
    assert calls[0][0] == "imagefolder" and summary.rows == 8
    ds = datasets.load_from_disk(str(tmp_path / "out" / layout.DATASET_DIR))
    assert sorted(ds["file_name"][:]) == sorted(i.path.name for i in images[:8])
    assert ds["year"][:] == sorted(i.year for i in images[:8])


# --- Bad input --------------------------------------------------------------------------------

def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims a huge size: what a decompression bomb looks like to PIL.open."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


BAD_FILES = {
    "zero.jpg": b"",
    "notes.jpg": b"this is a text file saved with a .jpg name\n",
    "truncated.jpg": jpeg_bytes(7)[:300],
    "bomb.png": png_header_only(10_000, 10_000),      # 100 MP: PIL's warning, treated as an error
    "bigger_bomb.png": png_header_only(30_000, 30_000),   # 900 MP: PIL's own error
}


def test_bad_files_are_skipped_and_listed(tmp_path: Path, tiny_clip: Path):
    """Every kind of bad file is skipped with a reason, in the summary and skipped.jsonl."""
    src = tmp_path / "mixed"
    (src / "1900").mkdir(parents=True)
    for i in range(3):
        draw_image(i).save(src / "1900" / f"good{i}.jpg", "JPEG")
    for name, data in BAD_FILES.items():
        (src / "1900" / name).write_bytes(data)
    summary = build(src, tmp_path / "out", tiny_clip)
    assert summary.rows == 3
    reasons = dict(summary.skipped)
    assert set(reasons) == set(BAD_FILES)
    assert "empty" in reasons["zero.jpg"] and "not an image" in reasons["notes.jpg"]
    assert "bomb" in reasons["bomb.png"] and "bomb" in reasons["bigger_bomb.png"]
    listed = [json.loads(line) for line in (tmp_path / "out" / layout.SKIPPED).read_text().splitlines()]
    assert {(d["file"], d["reason"]) for d in listed} == set(summary.skipped)
    assert layout.Manifest.read(tmp_path / "out").skipped == len(BAD_FILES)


def test_name_with_huge_numbers_builds_with_those_fields_unknown(tmp_path: Path, tiny_clip: Path):
    """A BL-pattern name whose page overflows int32 never fails the build: the page is None."""
    name = "20230101_0_20230101120000_1_[IMG]_2023.jpg"
    (tmp_path / "src").mkdir()
    draw_image(3).save(tmp_path / "src" / name, "JPEG")
    assert build(tmp_path / "src", tmp_path / "out", tiny_clip).rows == 1
    row = datasets.load_from_disk(str(tmp_path / "out" / layout.DATASET_DIR))[0]
    assert (row["file_name"], row["year"], row["page"], row["image_number"]) == (name, 2023, None, 1)


def test_source_integer_columns_out_of_int32_range_do_not_fail_the_build(tmp_path: Path, tiny_clip: Path):
    """Source page/year columns the collection cannot store leave the file name's values."""
    rows = saved_rows(2)
    rows["page"], rows["year"] = [2**40, 7], [20230101, 1850]
    features = saved_features()
    features["page"], features["year"] = datasets.Value("int64"), datasets.Value("int64")
    datasets.Dataset.from_dict(rows, features=features).save_to_disk(str(tmp_path / "saved"))
    assert build(tmp_path / "saved", tmp_path / "out", tiny_clip).rows == 2
    ds = datasets.load_from_disk(str(tmp_path / "out" / layout.DATASET_DIR))
    assert (ds["year"][:], ds["page"][:]) == ([1850, 1900], [7, 10])


def test_source_with_only_bad_files_is_a_build_error(tmp_path: Path, tiny_clip: Path):
    """No readable image at all is one clear error, and nothing is written at OUT."""
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "a.jpg").write_bytes(b"")
    with pytest.raises(BuildError, match="None of the 1 images"):
        build(tmp_path / "bad", tmp_path / "out", tiny_clip)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("make, message", [
    (lambda p: None, "does not exist"),
    (lambda p: p.mkdir(), "is empty"),
    (lambda p: (p.mkdir(), (p / "readme.txt").write_text("x")), "no image files"),
])
def test_unusable_sources_are_build_errors(tmp_path: Path, tiny_clip: Path, make, message):
    """A missing path, an empty folder or a folder without images is a BuildError saying so."""
    make(tmp_path / "src")
    with pytest.raises(BuildError, match=message):
        build(tmp_path / "src", tmp_path / "out", tiny_clip)


def test_non_collection_output_folder_is_not_replaced(tmp_path: Path, tiny_clip: Path, sample_images):
    """An existing folder that is not a collection is refused, so the user's files survive."""
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.docx").write_text("precious")
    with pytest.raises(BuildError, match="not a collection"):
        build(sample_images[0], out, tiny_clip)
    assert (out / "thesis.docx").read_text() == "precious"


# --- Atomicity ---------------------------------------------------------------------------------

@pytest.fixture
def existing(tmp_path: Path, collection_dir: Path) -> Path:
    out = tmp_path / "coll"
    shutil.copytree(collection_dir, out)
    return out


def test_model_that_cannot_load_leaves_existing_collection_intact(existing: Path, sample_images):
    """A failed rebuild (unknown model) leaves the old collection byte for byte as it was."""
    before = snapshot(existing)
    with pytest.raises(BuildError, match="Could not load model"):
        build(sample_images[0], existing, Path("/nonexistent/model"))
    assert snapshot(existing) == before


def test_failure_while_writing_leaves_no_half_collection(existing: Path, sample_images, tiny_clip, monkeypatch):
    """An error after the new files are half written leaves the old collection and no temp folder."""
    import scripts.writer

    before = snapshot(existing)

    def explode(folder):
        raise RuntimeError("disk full (injected)")

    monkeypatch.setattr(scripts.writer, "file_checksums", explode)
    with pytest.raises(RuntimeError, match="injected"):
        build(sample_images[0], existing, tiny_clip)
    assert snapshot(existing) == before
    assert sorted(p.name for p in existing.parent.iterdir() if p.name.startswith(".coll.tmp")) == []


def test_rebuild_replaces_collection_and_leaves_no_leftovers(existing: Path, tiny_clip: Path, tmp_path: Path):
    """A completed rebuild swaps the new collection in; no temp, old or work folders remain."""
    src = tmp_path / "saved"
    datasets.Dataset.from_dict(saved_rows(3), features=saved_features()).save_to_disk(str(src))
    build(src, existing, tiny_clip)
    assert layout.Manifest.read(existing).rows == 3
    assert [p.name for p in existing.parent.iterdir() if p.name.startswith(".coll")] == []


def test_collection_left_aside_by_a_killed_replace_is_restored(tmp_path: Path, collection_dir: Path,
                                                                sample_images):
    """Killed between replace_folder's renames (no OUT, old one aside): the next build puts it back."""
    shutil.copytree(collection_dir, tmp_path / ".coll.old-4242")
    with pytest.raises(BuildError, match="Could not load model"):
        build(sample_images[0], tmp_path / "coll", Path("/nonexistent/model"))
    assert snapshot(tmp_path / "coll") == snapshot(collection_dir)
    assert not (tmp_path / ".coll.old-4242").exists()


def test_half_written_collection_of_a_killed_build_is_removed(tmp_path: Path, sample_images):
    """A ``.OUT.tmp-<pid>`` left by a build killed while writing is deleted by the next build."""
    (tmp_path / ".coll.tmp-4242" / "dataset").mkdir(parents=True)
    (tmp_path / ".coll.tmp-4242" / "embeddings.npy").write_bytes(b"half")
    with pytest.raises(BuildError, match="Could not load model"):
        build(sample_images[0], tmp_path / "coll", Path("/nonexistent/model"))
    assert not (tmp_path / ".coll.tmp-4242").exists()


# --- Push to the Hub ------------------------------------------------------------------------

def test_push_to_hub_sends_rows_with_embeddings(tmp_path: Path, tiny_clip: Path, sample_images, monkeypatch):
    """--push-to-hub pushes the collection rows plus an embeddings column, privately."""
    pushed = []

    def fake_push(self, repo_id, **kwargs):
        pushed.append((self, repo_id, kwargs))

    monkeypatch.setattr(datasets.Dataset, "push_to_hub", fake_push)
    out = tmp_path / "out"
    summary = build(sample_images[0], out, tiny_clip, push_to_hub="me/bl-sample")
    assert summary.pushed_to == "me/bl-sample"
    [(ds, repo, kwargs)] = pushed
    assert repo == "me/bl-sample" and kwargs == {"private": True}
    assert np.allclose(np.array(ds["embeddings"][:]), np.load(out / layout.EMBEDDINGS))
    assert ds["file_name"][:] == datasets.load_from_disk(str(out / layout.DATASET_DIR))["file_name"][:]


def test_failed_push_keeps_the_built_collection(tmp_path: Path, tiny_clip: Path, sample_images, monkeypatch):
    """An upload error is a BuildError that says the collection was still built."""
    def failing_push(self, repo_id, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets.Dataset, "push_to_hub", failing_push)
    with pytest.raises(BuildError, match="was built"):
        build(sample_images[0], tmp_path / "out", tiny_clip, push_to_hub="me/x")
    assert layout.Manifest.read(tmp_path / "out").rows == 24
