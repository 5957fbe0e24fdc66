"""Per-image metadata: what a British Library file name says, plus the year folder it sat in.

BL names carry book id, volume, page, image number on the page, title and year:
``000499442_0_000579_1_[The Ring and the Book  etc ]_1920.jpg``. A name that does not match is
normal (other collections, renamed files) and only means those fields are unknown: it never
fails a build.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import PurePosixPath
from typing import Any

# book id _ volume _ page _ image number _ [title] _ year . extension
_BL_NAME = re.compile(
    r"^(?P<book_id>\d+)_(?P<volume>\d+)_(?P<page>\d+)_(?P<image_number>\d+)_"
    r"\[(?P<title>.*)\]_(?P<year>\d{3,4})\.[A-Za-z0-9]+$"
)
_YEAR = re.compile(r"^\d{3,4}$")

# The collection stores volume, page and image_number as int32 and year as int32 in 1..9999
# (search_core.layout); a number outside that range is unknown (None), never a failed build:
# such names exist (``20230101_0_20230101120000_1_[IMG]_2023.jpg``) and Arrow refuses to store them.
_INT32_MAX = 2**31 - 1
_YEARS = range(1, 10_000)


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

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _member_path(path: str) -> PurePosixPath:
    """The file's own path inside a local path or an fsspec chained URL (``zip://a/b.jpg::/x.zip``)."""
    inner = path.split("::", 1)[0].split("://", 1)[-1]
    return PurePosixPath(inner.replace("\\", "/"))


def file_name_of(path: str | None) -> str | None:
    """The bare file name of a local path or an archive member."""
    return (_member_path(path).name or None) if path else None


def folder_of(path: str | None) -> str | None:
    """The name of the folder holding a file (local path or archive member), e.g. '1850'."""
    return (_member_path(path).parent.name or None) if path else None


def parse_year(value: object) -> int | None:
    """A year in 1..9999 from an int or a string like '1850' (an imagefolder class name); None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and _YEAR.match(value.strip()):
        value = int(value.strip())
    if isinstance(value, int) and value in _YEARS:
        return value
    return None


def _int32(value: int) -> int | None:
    """``value`` if the collection's int32 columns can hold it, else None (unknown)."""
    return value if -_INT32_MAX - 1 <= value <= _INT32_MAX else None


def parse_file_name(file_name: str, folder_year: object = None) -> ImageMetadata:
    """Metadata from a file name, falling back to the year folder when the name has no year.

    The name's own year wins over the folder's: it is the book's publication year, while a
    folder is only how somebody sorted the files.
    """
    match = _BL_NAME.match(file_name)
    if match is None:
        return ImageMetadata(file_name=file_name, year=parse_year(folder_year))
    g = match.groupdict()
    return ImageMetadata(
        file_name=file_name,
        year=parse_year(int(g["year"])),
        # BL names replace punctuation by spaces ("The Ring and the Book  etc "): tidy for display;
        # the exact text stays in file_name.
        title=" ".join(g["title"].split()) or None,
        book_id=g["book_id"],
        volume=_int32(int(g["volume"])),
        page=_int32(int(g["page"])),
        image_number=_int32(int(g["image_number"])),
    )


# Where a file name can come from when the image column holds bytes without a path.
_NAME_COLUMNS = ("file_name", "fname", "filename")


def dataset_metadata(dataset: Any, image_column: str | None) -> list[ImageMetadata]:
    """ImageMetadata for every row of a `datasets.Dataset` whose image column is undecoded.

    Sources: the image path's file name (else a file-name column, else the row number), the
    year folder (imagefolder's ClassLabel ``label``), and any source column that already has one
    of our metadata names, whose non-null values win: somebody curated them.
    """
    import datasets
    import pyarrow.compute as pc

    table = dataset.with_format("arrow")
    paths = (pc.struct_field(table[image_column], "path").to_pylist() if image_column is not None
             else [None] * len(dataset))   # no images: vectors came from an embeddings column
    columns = [c for c in dataset.column_names if c != image_column]

    fallback_names: list[object] = [None] * len(paths)
    for col in _NAME_COLUMNS:
        if col in columns:
            fallback_names = table[col].to_pylist()
            break

    # The year folder: imagefolder's ClassLabel when it made one, else the path's parent folder
    # (imagefolder makes no label for a single folder, nor for archives when labels are dropped).
    folder_years: list[object] = [folder_of(p) for p in paths]
    label = dataset.features.get("label")
    if isinstance(label, datasets.ClassLabel):
        folder_years = [None if v is None or v < 0 else label.int2str(v) for v in table["label"].to_pylist()]

    rows = []
    for i, (path, fallback, folder_year) in enumerate(zip(paths, fallback_names, folder_years)):
        name = file_name_of(path) or (str(fallback) if fallback else None) or f"row-{i:06d}"
        rows.append(parse_file_name(name, folder_year))

    overrides = {c: table[c].to_pylist() for c in ImageMetadata.__dataclass_fields__ if c in columns}
    if overrides:
        rows = [_override(row, {c: vals[i] for c, vals in overrides.items()}) for i, row in enumerate(rows)]
    return rows


_INT_FIELDS = ("volume", "page", "image_number")


def _override(row: ImageMetadata, values: dict[str, object]) -> ImageMetadata:
    data = row.as_dict()
    for key, value in values.items():
        if value is None:
            continue
        if key == "year":
            value = parse_year(value) if parse_year(value) is not None else data["year"]
        elif key in _INT_FIELDS:
            # Unusable (not a number, or out of int32 range): the file name's value stands.
            try:
                value = _int32(int(value))  # type: ignore[arg-type]
            except (TypeError, ValueError, OverflowError):
                value = None
            if value is None:
                value = data[key]
        else:
            value = str(value)
        data[key] = value
    return ImageMetadata(**data)


def year_order(rows: list[ImageMetadata]) -> list[int]:
    """Row order with known years ascending, unknown years last; ties keep the source order.

    Sorting at build time turns a year range into a row range, so search can filter with a
    FAISS IDSelectorRange instead of scanning.
    """
    return sorted(range(len(rows)), key=lambda i: (rows[i].year is None, rows[i].year or 0, i))
