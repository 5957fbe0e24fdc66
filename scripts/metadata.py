"""Per-image metadata: what a British Library file name says, plus the year folder it sat in.

BL names carry book id, volume, page, image number on the page, title and year:
``000499442_0_000579_1_[The Ring and the Book  etc ]_1920.jpg``. A name that does not match is
normal (other collections, renamed files) and only means those fields are unknown: it never
fails a build.

Everything is Arrow compute over whole columns: no Python object per row. The list of
dataclasses this replaced cost about 1.9 KB a row of peak build memory (BENCHMARKS.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from search_core.layout import METADATA_COLUMNS

# book id _ volume _ page _ image number _ [title] _ year . extension (RE2, as Arrow runs it)
_BL_PATTERN = (r"^(?P<book_id>\d+)_(?P<volume>\d+)_(?P<page>\d+)_(?P<image_number>\d+)_"
               r"\[(?P<title>.*)\]_(?P<year>\d{3,4})\.[A-Za-z0-9]+$")
# The collection stores volume, page and image_number as int32 and year as int32 in 1..9999
# (search_core.layout); a number outside that range is unknown (null), never a failed build:
# such names exist (``20230101_0_20230101120000_1_[IMG]_2023.jpg``) and Arrow refuses to store them.
_INT32 = (-(2**31), 2**31 - 1)
_INT_FIELDS = ("volume", "page", "image_number")
# Where a file name can come from when the image column holds bytes without a path.
_NAME_COLUMNS = ("file_name", "fname", "filename")
SCHEMA = pa.schema([("file_name", pa.string()), ("year", pa.int32()), ("title", pa.string()),
                    ("book_id", pa.string()), ("volume", pa.int32()), ("page", pa.int32()),
                    ("image_number", pa.int32())])
assert tuple(SCHEMA.names) == METADATA_COLUMNS


@dataclass(frozen=True)
class ImageMetadata:
    """One row's metadata columns (search_core.layout.METADATA_COLUMNS); None where unknown."""

    file_name: str
    year: int | None = None
    title: str | None = None
    book_id: str | None = None
    volume: int | None = None
    page: int | None = None
    image_number: int | None = None


def parse_file_name(file_name: str, folder_year: object = None) -> ImageMetadata:
    """One name's metadata (parse_names on a single row), the folder's year filling in a name without one."""
    folder = None if folder_year is None else str(folder_year)
    row = parse_names(pa.array([file_name], pa.string()), pa.array([folder], pa.string())).to_pylist()[0]
    return ImageMetadata(**row)


def parse_year(value: object) -> int | None:
    """A year in 1..9999 from an int or a string like '1850' (an imagefolder class name); None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return _year_range(pa.array([value], pa.int64()))[0].as_py()
    return _year_from_text(pa.array([None if value is None else str(value)], pa.string()))[0].as_py()


def member_paths(paths: pa.Array) -> pa.Array:
    """A local path or an fsspec chained URL's own part: 'zip://a/b.jpg::/x.zip' -> 'a/b.jpg'."""
    inner = pc.replace_substring_regex(paths, r"::.*$", "")
    inner = pc.replace_substring_regex(inner, r"^.*?://", "", max_replacements=1)
    return pc.replace_substring(inner, "\\", "/")


def file_names(paths: pa.Array) -> pa.Array:
    """The bare file name of each path (null where there is none)."""
    names = pc.struct_field(pc.extract_regex(member_paths(paths), r"(?P<n>[^/]*)$"), [0])
    return pc.if_else(pc.equal(names, ""), pa.scalar(None, pa.string()), names)


def folder_names(paths: pa.Array) -> pa.Array:
    """The name of the folder holding each file, e.g. '1850' (null where there is none)."""
    found = pc.extract_regex(member_paths(paths), r"(?:^|/)(?P<d>[^/]+)/[^/]*$")
    return pc.struct_field(found, [0])


def parse_names(names: pa.Array, folder_years: pa.Array) -> pa.Table:
    """The metadata columns from file names, the folder's year filling in a name without one.

    The name's own year wins over the folder's: it is the book's publication year, while a
    folder is only how somebody sorted the files.
    """
    names = pc.cast(names, pa.string())
    match = pc.extract_regex(names, _BL_PATTERN)
    matched = pc.fill_null(match.is_valid(), False)
    field = {f: pc.struct_field(match, [i]) for i, f in enumerate(("book_id", "volume", "page", "image_number",
                                                                     "title", "year"))}
    year = pc.if_else(matched, _year_from_text(field["year"]), _year_from_text(folder_years))
    columns = {"file_name": names, "year": year, "title": _tidy(field["title"]), "book_id": field["book_id"]}
    for f in _INT_FIELDS:
        columns[f] = _int32(*_digits_to_int(field[f]))
    return pa.table(columns, schema=SCHEMA)


def metadata_table(dataset: Any, image_column: str | None) -> pa.Table:
    """METADATA_COLUMNS for every row of a `datasets.Dataset` whose image column is undecoded.

    Sources: the image path's file name (else a file-name column, else the row number), the
    year folder (imagefolder's ClassLabel ``label``, else the path's parent folder), and any
    source column that already has one of our metadata names, whose non-null values win:
    somebody curated them.
    """
    import datasets

    table = dataset.with_format("arrow")
    n = len(dataset)
    paths = (_array(pc.struct_field(table[image_column], "path")) if image_column is not None
             else pa.nulls(n, pa.string()))     # no images: vectors came from an embeddings column
    columns = [c for c in dataset.column_names if c != image_column]
    names = file_names(paths)
    for col in _NAME_COLUMNS:
        if col in columns:
            fallback = pc.cast(_array(table[col]), pa.string())
            fallback = pc.if_else(pc.equal(fallback, ""), pa.scalar(None, pa.string()), fallback)
            names = pc.if_else(names.is_valid(), names, fallback)
            break
    if names.null_count:
        row_names = pc.binary_join_element_wise(
            "row-", pc.utf8_lpad(pc.cast(pa.array(np.arange(n)), pa.string()), 6, "0"), "")
        names = pc.if_else(names.is_valid(), names, row_names)
    folder = folder_names(paths)
    label = dataset.features.get("label")
    if isinstance(label, datasets.ClassLabel):
        ids = _array(table["label"])
        valid = pc.fill_null(pc.greater_equal(ids, 0), False)
        folder = pc.if_else(valid, pc.take(pa.array(label.names, pa.string()), pc.if_else(valid, ids, 0)),
                            pa.scalar(None, pa.string()))
    meta = parse_names(names, folder)
    for c in METADATA_COLUMNS:
        if c in columns:
            meta = _override(meta, c, _array(table[c]))
    return meta


def year_order(years: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Row order with known years ascending, unknown years last; ties keep the source order.

    Sorting at build time turns a year range into a row range, so search can filter with a
    FAISS IDSelectorRange instead of scanning.
    """
    years = _array(years)
    valid = years.is_valid().to_numpy(zero_copy_only=False)
    values = years.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    return np.lexsort((np.arange(len(values)), values, ~valid)).astype(np.int64)


def _array(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values


def _digits_to_int(text: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(int64 values, valid) of decimal strings with an optional sign; invalid where null, not a
    number, or too long for int64."""
    text = pc.utf8_trim_whitespace(pc.cast(text, pa.string()))
    ok = pc.fill_null(pc.match_substring_regex(text, r"^[+-]?\d{1,18}$"), False)
    values = pc.cast(pc.if_else(ok, text, pa.scalar(None, pa.string())), pa.int64())
    return values.fill_null(0).to_numpy(zero_copy_only=False), ok.to_numpy(zero_copy_only=False)


def _year_from_text(text: pa.Array) -> pa.Array:
    """A year in 1..9999 from strings of 3-4 digits (a folder or class name); null otherwise."""
    text = pc.utf8_trim_whitespace(pc.cast(text, pa.string()))
    ok = pc.fill_null(pc.match_substring_regex(text, r"^\d{3,4}$"), False)
    return _year_range(pc.cast(pc.if_else(ok, text, pa.scalar(None, pa.string())), pa.int64()))


def _year_range(values: pa.Array) -> pa.Array:
    inside = pc.and_(pc.greater_equal(values, 1), pc.less_equal(values, 9999))
    return pc.cast(pc.if_else(inside, values, pa.scalar(None, pa.int64())), pa.int32())


def _int32(values: np.ndarray, valid: np.ndarray) -> pa.Array:
    ok = valid & (values >= _INT32[0]) & (values <= _INT32[1])
    return pa.array(np.where(ok, values, 0).astype(np.int32), mask=~ok)


def _tidy(titles: pa.Array) -> pa.Array:
    """BL names replace punctuation by spaces ('The Ring and the Book  etc '): tidied for display
    ('The Ring and the Book etc'), empty -> null; the exact text stays in file_name."""
    tidy = pc.binary_join(pc.utf8_split_whitespace(pc.utf8_trim_whitespace(titles)), " ")
    return pc.if_else(pc.equal(tidy, ""), pa.scalar(None, pa.string()), tidy)


def _override(meta: pa.Table, column: str, values: pa.Array) -> pa.Table:
    """A source column with one of our names: its usable non-null values win; an unusable one (not a
    number, out of range) leaves the file name's value standing."""
    kind = values.type
    if column == "year":
        if pa.types.is_integer(kind):
            new = _year_range(pc.cast(values, pa.int64()))
        elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
            new = _year_from_text(values)
        else:
            return meta
    elif column in _INT_FIELDS:
        if pa.types.is_integer(kind) or pa.types.is_boolean(kind):
            ints = pc.cast(values, pa.int64()).fill_null(0).to_numpy(zero_copy_only=False)
            new = _int32(ints, values.is_valid().to_numpy(zero_copy_only=False))
        elif pa.types.is_floating(kind):
            finite = pc.fill_null(pc.is_finite(values), False).to_numpy(zero_copy_only=False)
            raw = np.nan_to_num(values.fill_null(0).to_numpy(zero_copy_only=False))
            new = _int32(np.trunc(np.clip(raw, -2**62, 2**62)).astype(np.int64), finite)
        elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
            new = _int32(*_digits_to_int(values))
        else:
            return meta
    else:
        try:
            new = pc.cast(values, pa.string())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return meta
    index = meta.schema.get_field_index(column)
    current = _array(meta.column(index))
    return meta.set_column(index, column, pc.if_else(new.is_valid(), pc.cast(new, current.type), current))
