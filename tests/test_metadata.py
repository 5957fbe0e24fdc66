"""scripts.metadata: British Library file names, year folders, odd names, year order."""

from __future__ import annotations

import datasets
import pyarrow as pa
import pytest

from scripts.metadata import (
    ImageMetadata,
    file_names,
    folder_names,
    metadata_table,
    parse_file_name,
    parse_year,
    year_order,
)


def test_bl_name_gives_every_field():
    """A BL name yields book id, volume, page, image number, title (spacing tidied) and year."""
    meta = parse_file_name("000499442_0_000579_1_[The Ring and the Book  etc ]_1920.jpg")
    assert meta == ImageMetadata(
        file_name="000499442_0_000579_1_[The Ring and the Book  etc ]_1920.jpg", year=1920,
        title="The Ring and the Book etc", book_id="000499442", volume=0, page=579, image_number=1,
    )


def test_title_with_brackets_and_underscores_is_kept_whole():
    """Titles may hold '_' and '[' ']' themselves; the year is still the last field."""
    meta = parse_file_name("003253947_02_000141_2_[Poems_ [Second series]]_1866.png")
    assert (meta.title, meta.year, meta.volume, meta.page) == ("Poems_ [Second series]", 1866, 2, 141)


@pytest.mark.parametrize("name", ["holiday photo.jpg", "000499442_0_[no page]_1920.jpg", "_.jpg",
                                  "000499442_0_000579_1_[T]_19x0.jpg", "ünïcødé 名前.jpeg", ""])
def test_odd_names_keep_the_file_name_and_never_raise(name):
    """A name that does not parse keeps the file name and leaves the other fields unknown."""
    meta = parse_file_name(name)
    assert meta.file_name == name
    assert (meta.year, meta.title, meta.book_id, meta.volume, meta.page, meta.image_number) == (None,) * 6


def test_year_folder_fills_in_an_unparsed_name():
    """imagefolder's class name (the year folder) gives the year when the name has none."""
    assert parse_file_name("scan 17.jpg", folder_year="1850").year == 1850
    assert parse_file_name("scan 17.jpg", folder_year="misc").year is None


def test_name_year_wins_over_folder_year():
    """The publication year in the name is more specific than how files were sorted into folders."""
    assert parse_file_name("000499442_0_000579_1_[T]_1920.jpg", folder_year="1850").year == 1920


@pytest.mark.parametrize("path, name", [
    ("/data/1850/a b.jpg", "a b.jpg"),
    ("zip://1850/x_[t]_1850.jpg::/tmp/sample.zip", "x_[t]_1850.jpg"),
    ("zip://x.jpg::https://zenodo.org/record/6224034/files/s.zip?download=1", "x.jpg"),
    (None, None),
])
def test_file_name_of_local_and_chained_paths(path, name):
    """The bare name is found in local paths and fsspec chained URLs of archive members."""
    assert file_names(pa.array([path], pa.string())).to_pylist() == [name]


def test_year_order_puts_unknown_years_last_and_keeps_ties_stable():
    """Known years ascend, unknown years go last, equal years keep source order."""
    years = pa.array([1900, None, 1850, 1900, None], pa.int32())
    assert year_order(years).tolist() == [2, 0, 3, 1, 4]
    assert year_order(pa.chunked_array([years[:2], years[2:]])).tolist() == [2, 0, 3, 1, 4]


def test_dataset_metadata_uses_labels_name_columns_and_curated_columns():
    """Rows get names from the path or a name column, years from labels, and curated values win."""
    ds = datasets.Dataset.from_dict(
        {"image": [{"bytes": None, "path": "/x/1850/000000001_0_000001_1_[A]_1850.jpg"},
                   {"bytes": b"...", "path": None},
                   {"bytes": None, "path": "/x/1870/plain.jpg"}],
         "fname": ["ignored.jpg", "from_column.jpg", "ignored2.jpg"],
         "label": [0, 0, 1],
         "title": [None, "Curated title", None]},
        features=datasets.Features({"image": datasets.Image(decode=False), "fname": datasets.Value("string"),
                                    "label": datasets.ClassLabel(names=["1850", "1870"]),
                                    "title": datasets.Value("string")}),
    )
    meta = metadata_table(ds, "image")
    assert meta.column("file_name").to_pylist() == ["000000001_0_000001_1_[A]_1850.jpg", "from_column.jpg",
                                                    "plain.jpg"]
    assert meta.column("year").to_pylist() == [1850, 1850, 1870]
    assert meta.column("title").to_pylist() == ["A", "Curated title", None]


def test_rows_without_any_name_are_named_by_their_row_number():
    ds = datasets.Dataset.from_dict({"image": [{"bytes": b"x", "path": None}] * 2},
                                    features=datasets.Features({"image": datasets.Image(decode=False)}))
    assert metadata_table(ds, "image").column("file_name").to_pylist() == ["row-000000", "row-000001"]


@pytest.mark.parametrize("path, folder", [
    ("/data/1850/a.jpg", "1850"),
    ("zip://sample/1870/x.jpg::/cache/downloads/abc123", "1870"),
    ("zip://x.jpg::/cache/a.zip", None),
    (None, None),
])
def test_folder_of_local_and_archive_paths(path, folder):
    """The year folder is read from the member path inside an archive, not the archive's folder."""
    assert folder_names(pa.array([path], pa.string())).to_pylist() == [folder]


def test_single_year_folder_without_label_still_gives_year():
    """imagefolder makes no label for a single folder: the path's folder still gives the year."""
    ds = datasets.Dataset.from_dict({"image": [{"bytes": None, "path": "/x/1890/scan.jpg"}]},
                                    features=datasets.Features({"image": datasets.Image(decode=False)}))
    assert metadata_table(ds, "image").column("year").to_pylist() == [1890]


def test_numbers_too_big_for_the_collection_are_unknown():
    """A BL-pattern name whose numbers overflow int32 keeps its year and text; the numbers are None."""
    meta = parse_file_name("20230101_0_20230101120000_1_[IMG]_2023.jpg")
    assert (meta.year, meta.book_id, meta.volume, meta.page, meta.image_number) == (
        2023, "20230101", 0, None, 1)


@pytest.mark.parametrize("value", [0, -5, 10_000, 20230101, "0000"])
def test_years_outside_1_to_9999_are_unknown(value):
    """A year column or folder outside 1..9999 (a date, a zero placeholder) gives no year."""
    assert parse_year(value) is None


def test_source_number_column_out_of_int32_range_keeps_the_names_value():
    """A curated page/year column value the collection cannot store is ignored, not stored."""
    ds = datasets.Dataset.from_dict(
        {"image": [{"bytes": None, "path": "/x/000000001_0_000012_1_[T]_1890.jpg"}],
         "page": [2**40], "year": [20230101]},
        features=datasets.Features({"image": datasets.Image(decode=False), "page": datasets.Value("int64"),
                                    "year": datasets.Value("int64")}))
    meta = metadata_table(ds, "image").to_pylist()[0]
    assert (meta["page"], meta["year"]) == (12, 1890)
