"""Incremental builds (issue 9, item 1): a build onto an existing collection embeds only new and changed
images, drops rows whose files are gone, reuses every other vector byte for byte, and recomputes the
index, the near-duplicate groups and the weak-match scale over the result."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import datasets
import numpy as np
import pytest
from PIL import Image

from scripts.build import build_collection
from scripts.cli import main as cli_main
from search_core import layout
from search_core.collection import Collection
from search_core.encoder import Encoder
from search_core.errors import BuildError
from tests.fixtures.images import bl_file_name, draw_image, make_imagefolder
from tests.fixtures.tiny_clip import build_tiny_clip
from tests.test_build import jpeg_bytes


@pytest.fixture(scope="module")
def tiny_encoder(tiny_clip: Path) -> Encoder:
    """Loaded as the build loads it (precision auto), so vectors must match."""
    return Encoder.load(str(tiny_clip), device="cpu", precision="auto")


def build(source: Path, out: Path, tiny_clip: Path, **kwargs):
    return build_collection(str(source), out, model=str(tiny_clip), device="cpu", progress=False, **kwargs)


@pytest.fixture
def embedded(monkeypatch) -> list[int]:
    """Counts the images the model embeds (one entry per model call: its batch size)."""
    calls: list[int] = []
    real = Encoder.embed_preprocessed

    def counting(self, features):
        vectors = real(self, features)
        calls.append(len(vectors))
        return vectors

    monkeypatch.setattr(Encoder, "embed_preprocessed", counting)
    return calls


def vectors_by_name(folder: Path) -> dict[str, bytes]:
    names = datasets.load_from_disk(str(folder / layout.DATASET_DIR))["file_name"]
    vectors = np.load(folder / layout.EMBEDDINGS)
    return {name: vectors[i].tobytes() for i, name in enumerate(names)}


@pytest.fixture
def grown(tmp_path: Path, tiny_clip: Path) -> tuple[Path, Path]:
    """A source of 12 images and a collection built from it (source, collection)."""
    src = tmp_path / "src"
    make_imagefolder(src, n=12)
    out = tmp_path / "coll"
    build(src, out, tiny_clip)
    return src, out


def add_images(src: Path, n: int, seed: int = 5, year: int = 1880) -> list[str]:
    (src / str(year)).mkdir(exist_ok=True)
    names = []
    for i in range(n):
        name = bl_file_name(700_000 + seed * 100 + i, 0, i, 1, "Added", year)
        draw_image(seed * 1000 + i).save(src / str(year) / name, "JPEG", quality=90)
        names.append(name)
    return names


def sources(src: Path) -> list[Path]:
    return sorted(p for p in src.rglob("*.jpg"))


def test_added_images_are_the_only_ones_embedded(grown, tiny_clip: Path, embedded: list[int]):
    """3 new files: 3 images embedded, 12 old vectors byte-identical, rows re-sorted by year."""
    src, out = grown
    before = vectors_by_name(out)
    added = add_images(src, 3)
    embedded.clear()
    summary = build(src, out, tiny_clip)
    assert sum(embedded) == 3
    c = summary.changes
    assert (c.incremental, c.added, c.changed, c.removed, c.kept) == (True, 3, 0, 0, 12)
    after = vectors_by_name(out)
    assert set(after) == set(before) | set(added)
    assert all(after[name] == vector for name, vector in before.items())
    years = datasets.load_from_disk(str(out / layout.DATASET_DIR))["year"]
    assert years == sorted(years) and years.count(1880) == 3
    Collection.open(out)      # consistent: rows, embeddings, index, groups


def test_a_changed_file_is_embedded_again(grown, tiny_clip: Path, embedded: list[int], tiny_encoder):
    """A file rewritten with another picture: its vector is the new picture's; the rest are kept."""
    src, out = grown
    before = vectors_by_name(out)
    target = sources(src)[4]
    draw_image(4242).save(target, "JPEG", quality=90)
    os.utime(target, ns=(1, 2_000_000_000))
    embedded.clear()
    summary = build(src, out, tiny_clip)
    assert sum(embedded) == 1
    assert (summary.changes.changed, summary.changes.kept, summary.changes.added) == (1, 11, 0)
    after = vectors_by_name(out)
    assert after[target.name] != before[target.name]
    with Image.open(target) as saved:
        fresh = tiny_encoder.encode_images([saved.convert("RGB")])[0]
    new, old = (np.frombuffer(v, np.float32) for v in (after[target.name], before[target.name]))
    assert float(new @ fresh) > 0.99 > float(old @ fresh)
    assert all(after[n] == v for n, v in before.items() if n != target.name)


def test_removed_files_drop_their_rows(grown, tiny_clip: Path, embedded: list[int]):
    src, out = grown
    gone = sources(src)[:2]
    for path in gone:
        path.unlink()
    embedded.clear()
    summary = build(src, out, tiny_clip)
    assert sum(embedded) == 0
    assert (summary.changes.removed, summary.changes.kept, summary.rows) == (2, 10, 10)
    assert not {p.name for p in gone} & set(vectors_by_name(out))
    assert Collection.open(out).index.ntotal == 10


def test_added_changed_and_removed_at_once_printed_by_the_cli(grown, tiny_clip: Path, embedded: list[int],
                                                              capsys):
    """All three at once through `imagesearch build`: one line says what happened."""
    src, out = grown
    before = vectors_by_name(out)
    files = sources(src)
    files[0].unlink()
    draw_image(777).save(files[1], "JPEG", quality=90)
    os.utime(files[1], ns=(1, 3_000_000_000))
    added = add_images(src, 2)
    embedded.clear()
    code = cli_main(["build", str(src), "--out", str(out), "--model", str(tiny_clip), "--device", "cpu",
                     "--no-progress"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "added 2, changed 1, removed 1, kept 10" in err
    assert sum(embedded) == 3
    after = vectors_by_name(out)
    assert set(after) == (set(before) - {files[0].name}) | set(added)
    kept = set(before) - {files[0].name, files[1].name}
    assert all(after[n] == before[n] for n in kept)


def test_nothing_changed_embeds_nothing_and_gets_a_new_build_id(grown, tiny_clip: Path, embedded: list[int]):
    src, out = grown
    first = layout.Manifest.read(out)
    vectors = (out / layout.EMBEDDINGS).read_bytes()
    embedded.clear()
    summary = build(src, out, tiny_clip)
    assert sum(embedded) == 0 and summary.changes.kept == 12
    second = layout.Manifest.read(out)
    assert second.build_id and first.build_id and second.build_id != first.build_id
    assert (out / layout.EMBEDDINGS).read_bytes() == vectors


def test_touched_file_with_the_same_bytes_is_kept(grown, tiny_clip: Path, embedded: list[int]):
    """A copy that did not keep modification times: read once, same digest, vector kept."""
    src, out = grown
    target = sources(src)[3]
    os.utime(target, ns=(1, 5_000_000_000))
    embedded.clear()
    summary = build(src, out, tiny_clip)
    assert sum(embedded) == 0 and (summary.changes.kept, summary.changes.changed) == (12, 0)


def test_full_embeds_everything_again(grown, tiny_clip: Path, embedded: list[int]):
    src, out = grown
    embedded.clear()
    summary = build(src, out, tiny_clip, full=True)
    assert sum(embedded) == 12
    assert summary.changes.incremental is False and layout.Manifest.read(out).changes.incremental is False


def test_another_model_is_refused_without_full(grown, tiny_clip: Path, tmp_path: Path, capsys):
    """Vectors of two models never mix: one error line asking for --full; with it, the build runs."""
    src, out = grown
    other = build_tiny_clip(tmp_path / "other_clip", seed=3)
    before = (out / layout.MANIFEST).read_bytes()
    code = cli_main(["build", str(src), "--out", str(out), "--model", str(other), "--device", "cpu", "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and err[-1].startswith("error: ") and "--full" in err[-1]
    assert [line for line in err if not line.startswith("scan: ")] == err[-1:]       # progress, then one error
    assert (out / layout.MANIFEST).read_bytes() == before
    summary = build(src, out, other, full=True)
    assert summary.rows == 12 and layout.Manifest.read(out).model == str(other)


def test_another_precision_is_refused_without_full(grown, tiny_clip: Path):
    src, out = grown
    precision = layout.Manifest.read(out).precision
    other = "fp32" if precision != "fp32" else "int8"
    with pytest.raises(BuildError, match="--full"):
        build(src, out, tiny_clip, precision=other)
    assert layout.Manifest.read(out).precision == precision


def test_groups_and_weak_match_scale_match_a_full_build(grown, tiny_clip: Path, tmp_path: Path):
    """Copies of an old image added later join its group; groups and scale equal a clean build's."""
    src, out = grown
    original = sources(src)[0]
    (src / "1899").mkdir()
    for i in range(2):
        shutil.copy(original, src / "1899" / f"copy{i}.jpg")
    incremental = build(src, out, tiny_clip)
    clean = build(src, tmp_path / "clean", tiny_clip)
    assert incremental.duplicates == clean.duplicates and incremental.duplicates.largest >= 3
    assert np.array_equal(np.load(out / layout.GROUPS), np.load(tmp_path / "clean" / layout.GROUPS))
    assert incremental.match_scale == clean.match_scale


def test_a_saved_dataset_is_compared_by_content(tmp_path: Path, tiny_clip: Path, embedded: list[int]):
    """Image bytes in a dataset have no file time: a row whose bytes change is embedded again."""
    def save(images: list[bytes]) -> Path:
        folder = tmp_path / "saved"
        if folder.exists():
            shutil.rmtree(folder)
        datasets.Dataset.from_dict(
            {"image": [{"bytes": b, "path": f"img{i}.jpg"} for i, b in enumerate(images)]},
            features=datasets.Features({"image": datasets.Image()})).save_to_disk(str(folder))
        return folder

    images = [jpeg_bytes(300 + i) for i in range(6)]
    build(save(images), tmp_path / "coll", tiny_clip)
    images[2] = jpeg_bytes(999)
    embedded.clear()
    summary = build(save(images + [jpeg_bytes(1000)]), tmp_path / "coll", tiny_clip)
    assert sum(embedded) == 2
    c = summary.changes
    assert (c.added, c.changed, c.removed, c.kept) == (1, 1, 0, 5)


def test_an_old_collection_without_a_file_list_is_rebuilt_from_scratch(grown, tiny_clip: Path, embedded: list[int]):
    """A collection built before incremental builds (no files.arrow) is embedded again, not refused."""
    src, out = grown
    (out / layout.FILES).unlink()
    embedded.clear()
    summary = build(src, out, tiny_clip)
    assert sum(embedded) == 12 and summary.changes.incremental is False


def test_an_ivf_index_is_rebuilt_with_recall_measured(tmp_path: Path, tiny_clip: Path):
    """An IVF collection grown by 20%: the index holds every row, ids are rows, recall is measured."""
    src = tmp_path / "src"
    make_imagefolder(src, n=100, seed=2)
    out = tmp_path / "coll"
    build(src, out, tiny_clip, index="IVF2,Flat")
    add_images(src, 20)
    summary = build(src, out, tiny_clip, index="IVF2,Flat")
    assert summary.rows == 120 and summary.index.recall_at_10 is not None
    c = Collection.open(out)
    _, ids = c.index.search(np.ascontiguousarray(c.embeddings[:20], dtype=np.float32), 1)
    assert ids[:, 0].tolist() == list(range(20))
