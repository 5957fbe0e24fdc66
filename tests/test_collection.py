"""Opening a collection folder: what it exposes, and a clear error for each way it can be broken."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from search_core import layout
from search_core.collection import Collection
from search_core.errors import CollectionError, QueryError
from tests.fixtures.synthetic_collection import unit_vectors, write_collection

YEARS = [1850] * 3 + [1870] * 4 + [1890] * 2 + [None] * 3   # sorted; unknown years last
NAMES = [f"img_{i:02d}.jpg" for i in range(len(YEARS))]


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 12-row synthetic collection; treat as read-only (copy it before breaking it)."""
    return write_collection(tmp_path_factory.mktemp("coll") / "small", unit_vectors(len(YEARS), 8),
                            years=YEARS, file_names=NAMES)


@pytest.fixture
def broken(small: Path, tmp_path: Path) -> Path:
    """A private copy of the small collection, to damage."""
    return Path(shutil.copytree(small, tmp_path / "copy"))


def test_open_exposes_rows_manifest_and_embeddings(small: Path) -> None:
    """An opened collection reports its row count and memory-maps the embeddings."""
    c = Collection.open(small)
    assert c.rows == len(YEARS) == c.manifest.rows
    assert c.embeddings.shape == (len(YEARS), 8)
    assert isinstance(c.embeddings.base, np.memmap) and not c.embeddings.flags.owndata   # a view of the map
    assert c.dataset.num_rows == len(YEARS)


def test_metadata_has_columns_but_not_the_image(small: Path) -> None:
    """metadata(row) returns the row's fields without decoding its image."""
    meta = Collection.open(small).metadata(4)
    assert meta["file_name"] == "img_04.jpg"
    assert meta["year"] == 1870
    assert "image" not in meta


def test_image_is_rgb(small: Path) -> None:
    """image(row) gives a decoded RGB PIL image."""
    img = Collection.open(small).image(0)
    assert isinstance(img, Image.Image) and img.mode == "RGB" and img.size == (4, 4)


def test_image_bytes_are_the_stored_file(tmp_path: Path) -> None:
    """image_bytes(row) gives the encoded bytes as stored; a row with none is a CollectionError."""
    png = tmp_path / "x.png"
    Image.new("RGB", (3, 2), (1, 2, 3)).save(png)
    folder = write_collection(tmp_path / "c", unit_vectors(2, 8), images=[png.read_bytes(), b""])
    c = Collection.open(folder)
    assert c.image_bytes(0) == png.read_bytes()
    with pytest.raises(CollectionError, match="Image 1 .* has no image"):
        c.image_bytes(1)
    with pytest.raises(CollectionError, match="Image 1"):
        c.image(1)


def test_row_out_of_range_is_a_query_error(small: Path) -> None:
    """Asking for a row past the end is the caller's error, said plainly."""
    with pytest.raises(QueryError, match="no image number 99"):
        Collection.open(small).metadata(99)


def test_rows_for_file_names_ignores_unknown_names(small: Path) -> None:
    """File names map to their rows; names not in the collection are skipped, not an error."""
    rows = Collection.open(small).rows_for_file_names(["img_07.jpg", "nope.jpg", "img_02.jpg"])
    assert rows == [2, 7]


@pytest.mark.parametrize(("year_from", "year_to", "expected"), [
    (None, None, (0, 12)),     # no filter: every row, unknown years included
    (1870, 1870, (3, 7)),
    (1860, 1880, (3, 7)),
    (None, 1870, (0, 7)),
    (1870, None, (3, 9)),      # unknown years are out once a bound is given
    (1900, 1950, (9, 9)),      # empty
])
def test_year_row_range(small: Path, year_from: int | None, year_to: int | None,
                        expected: tuple[int, int]) -> None:
    """A year range maps to a contiguous row range because rows are sorted by year."""
    assert Collection.open(small).year_row_range(year_from, year_to) == expected


def test_reversed_year_range_is_refused(small: Path) -> None:
    """year_from after year_to is a QueryError, not an empty result."""
    with pytest.raises(QueryError, match="after"):
        Collection.open(small).year_row_range(1900, 1850)


def test_missing_folder(tmp_path: Path) -> None:
    """A path that does not exist says so."""
    with pytest.raises(CollectionError, match="does not exist"):
        Collection.open(tmp_path / "nowhere")


def test_missing_manifest(broken: Path) -> None:
    """A folder without manifest.json is not a collection, and the error names the file."""
    (broken / layout.MANIFEST).unlink()
    with pytest.raises(CollectionError, match="manifest.json is missing"):
        Collection.open(broken)


def test_malformed_manifest(broken: Path) -> None:
    """A manifest that is not JSON gives a clear error naming it."""
    (broken / layout.MANIFEST).write_text("{not json", encoding="utf-8")
    with pytest.raises(CollectionError, match="manifest.json"):
        Collection.open(broken)


def test_unknown_format_version(broken: Path) -> None:
    """A collection from a newer (or older) format is refused, naming both versions."""
    data = json.loads((broken / layout.MANIFEST).read_text())
    data["format_version"] = 99
    (broken / layout.MANIFEST).write_text(json.dumps(data))
    with pytest.raises(CollectionError, match=r"format version 99.*version 1"):
        Collection.open(broken)


def test_missing_index(broken: Path) -> None:
    """A missing index.faiss is named."""
    (broken / layout.INDEX).unlink()
    with pytest.raises(CollectionError, match="index.faiss is missing"):
        Collection.open(broken)


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_index(broken: Path, damage: str) -> None:
    """A damaged index.faiss (garbage or cut short) is a CollectionError naming it, not a crash."""
    file = broken / layout.INDEX
    data = file.read_bytes()
    file.write_bytes(b"\x00garbage" * 20 if damage == "garbage" else data[: len(data) // 2])
    with pytest.raises(CollectionError, match="index.faiss"):
        Collection.open(broken)


def test_missing_dataset(broken: Path) -> None:
    """A missing dataset/ folder is named."""
    shutil.rmtree(broken / layout.DATASET_DIR)
    with pytest.raises(CollectionError, match="dataset/ is missing"):
        Collection.open(broken)


def test_rows_mismatch(broken: Path) -> None:
    """A manifest whose row count disagrees with the files is refused."""
    data = json.loads((broken / layout.MANIFEST).read_text())
    data["rows"] = 11
    (broken / layout.MANIFEST).write_text(json.dumps(data))
    with pytest.raises(CollectionError, match="12 rows but manifest.json says 11"):
        Collection.open(broken)


def test_corrupt_embeddings(broken: Path) -> None:
    """embeddings.npy that is not a numpy file is named."""
    (broken / layout.EMBEDDINGS).write_bytes(b"not numpy")
    with pytest.raises(CollectionError, match="embeddings.npy"):
        Collection.open(broken)


def test_unsorted_years_refused(tmp_path: Path) -> None:
    """Rows out of year order would break year filters silently, so opening refuses them."""
    folder = write_collection(tmp_path / "c", unit_vectors(4, 8), years=[1900, 1850, 1870, 1880])
    with pytest.raises(CollectionError, match="not sorted by year"):
        Collection.open(folder)
