"""`imagesearch search` / `python -m search_core search`: table, JSON, contact sheet, clean errors."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from search_core.cli import main
from search_core.sheet import sheet_size
from tests.fixtures.images import SampleImage

REPO = Path(__file__).resolve().parents[1]


def run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = main(["search", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def test_table_lists_k_hits(capsys: pytest.CaptureFixture, collection_dir: Path) -> None:
    """A prompt prints a header, one line per hit ranked from 1, and a paging hint."""
    code, out, err = run(capsys, collection_dir, "an engraving of a ship", "-k", "4")
    assert code == 0, err
    lines = out.strip().splitlines()
    assert lines[0].split()[:4] == ["rank", "score", "year", "file"]
    assert [line.split()[0] for line in lines[1:5]] == ["1", "2", "3", "4"]
    assert all(".jpg" in line for line in lines[1:5])
    assert lines[5] == "(1-4 of 24; next page: --offset 4)"


def test_image_query_finds_that_image_first(capsys: pytest.CaptureFixture, collection_dir: Path,
                                            sample_images: tuple[Path, list[SampleImage]]) -> None:
    """--image with a picture from the collection lists it as hit 1."""
    sample = sample_images[1][3]
    code, out, err = run(capsys, collection_dir, "--image", sample.path, "-k", "2", "--json")
    assert code == 0, err
    assert json.loads(out)["hits"][0]["file_name"] == sample.path.name


def test_json_output(capsys: pytest.CaptureFixture, collection_dir: Path) -> None:
    """--json prints the page with every hit's metadata, and the year filter holds."""
    code, out, err = run(capsys, collection_dir, "poems", "-k", "3", "--offset", "2",
                         "--year-from", "1870", "--year-to", "1870", "--json")
    assert code == 0, err
    page = json.loads(out)
    assert (page["offset"], page["k"], page["total_eligible"], page["has_next"]) == (2, 3, 6, True)
    assert [h["rank"] for h in page["hits"]] == [3, 4, 5]
    assert {h["year"] for h in page["hits"]} == {1870}
    assert set(page["hits"][0]) >= {"row", "score", "file_name", "title", "book_id", "page"}


def test_sheet_is_saved(capsys: pytest.CaptureFixture, collection_dir: Path, tmp_path: Path) -> None:
    """--sheet writes a PNG contact sheet sized for the hits."""
    out_file = tmp_path / "sheet.png"
    code, _, err = run(capsys, collection_dir, "birds", "-k", "5", "--sheet", out_file)
    assert code == 0, err
    with Image.open(out_file) as img:
        assert img.format == "PNG" and img.size == sheet_size(5)


def test_hidden_list_applies(capsys: pytest.CaptureFixture, collection_dir: Path, tmp_path: Path,
                             sample_images: tuple[Path, list[SampleImage]]) -> None:
    """A file named in --hidden never shows, even when searching with that very image."""
    sample = sample_images[1][0]
    hidden = tmp_path / "hidden.txt"
    hidden.write_text(f"# takedowns\n\n{sample.path.name}\n", encoding="utf-8")
    code, out, err = run(capsys, collection_dir, "--image", sample.path, "--hidden", hidden, "--json")
    assert code == 0, err
    names = [h["file_name"] for h in json.loads(out)["hits"]]
    assert len(names) == 9 and sample.path.name not in names


@pytest.mark.parametrize(("args", "message"), [
    (("{missing}", "a ship"), "does not exist"),
    (("{coll}",), "PROMPT, an --image"),
    (("{coll}", "   "), "empty"),
    (("{coll}", "--image", "{text}"), "not an image"),
    (("{coll}", "--image", "{missing}"), "Cannot read the image file"),
    (("{coll}", "ship", "-k", "0"), "between 1 and"),
    (("{coll}", "ship", "--year-from", "1900", "--year-to", "1800"), "after"),
])
def test_errors_are_one_line(capsys: pytest.CaptureFixture, collection_dir: Path, tmp_path: Path,
                             args: tuple[str, ...], message: str) -> None:
    """Bad input gives exit 1 and a single 'error: ...' line on stderr, no traceback, nothing on stdout."""
    text = tmp_path / "notes.txt"
    text.write_text("not a picture", encoding="utf-8")
    values = {"missing": tmp_path / "nope", "coll": collection_dir, "text": text}
    code, out, err = run(capsys, *(a.format(**values) for a in args))
    assert code == 1
    assert out == ""
    assert err.startswith("error: ") and message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_registered_on_the_imagesearch_command(capsys: pytest.CaptureFixture, collection_dir: Path) -> None:
    """`imagesearch search` (scripts/cli.py) reaches the same command."""
    from scripts.cli import main as imagesearch

    assert imagesearch(["search", str(collection_dir), "ship", "-k", "1", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["hits"]) == 1


def test_python_m_search_core_missing_collection(tmp_path: Path) -> None:
    """`python -m search_core search` runs as a module and fails cleanly on a missing collection."""
    proc = subprocess.run([sys.executable, "-m", "search_core", "search", str(tmp_path / "nope"), "a ship"],
                          check=False, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: No collection at") and "Traceback" not in proc.stderr


# --- near-duplicates: collapse, --no-collapse, --expand (collection with 3 groups of 5 copies) -----

def test_copies_collapse_into_one_hit_with_a_count(capsys: pytest.CaptureFixture, copies_collection: Path) -> None:
    """Searching with a copy lists its group once, standing for 5 images, then the 11 other pictures;
    --no-collapse lists the 5 copies one by one. Totals count groups, then rows."""
    code, out, err = run(capsys, copies_collection, "--image", _a_copy(copies_collection), "-k", "20", "--json")
    assert code == 0, err
    page = json.loads(out)
    assert page["collapsed"] and page["total_eligible"] == 12 and len(page["hits"]) == 12
    assert page["hits"][0]["group_size"] == 5 and sorted(h["group_size"] for h in page["hits"])[-3:] == [5, 5, 5]
    code, out, err = run(capsys, copies_collection, "--image", _a_copy(copies_collection), "-k", "5",
                         "--no-collapse", "--json")
    page = json.loads(out)
    assert not page["collapsed"] and page["total_eligible"] == 24
    assert {int(h["file_name"].split("_")[2]) for h in page["hits"]} == {2}   # the page number is the picture


def test_table_shows_copies_and_how_to_expand(capsys: pytest.CaptureFixture, copies_collection: Path) -> None:
    code, out, err = run(capsys, copies_collection, "--image", _a_copy(copies_collection), "-k", "3")
    assert code == 0, err
    lines = out.splitlines()
    assert "copies" in lines[0].split()
    assert re.search(r"\.jpg\s+5\s", lines[1])
    assert lines[-1].startswith("near-identical: hit 1 stands for 5 images (--expand ")


def test_expand_lists_the_group(capsys: pytest.CaptureFixture, copies_collection: Path) -> None:
    """--expand ROW (from the hint) lists the five copies, paged, without a query or ranked by one."""
    code, out, _ = run(capsys, copies_collection, "--image", _a_copy(copies_collection), "-k", "1", "--json")
    row = json.loads(out)["hits"][0]["row"]
    code, out, err = run(capsys, copies_collection, "--expand", row, "-k", "3", "--json")
    assert code == 0, err
    first = json.loads(out)
    code, out, err = run(capsys, copies_collection, "--expand", row, "-k", "3", "--offset", "3", "--json")
    second = json.loads(out)
    rows = [h["row"] for h in first["hits"] + second["hits"]]
    assert first["total_eligible"] == 5 and len(set(rows)) == 5 and rows[0] == row
    assert all(h["group_size"] == 1 for h in first["hits"]) and not second["has_next"]
    code, out, err = run(capsys, copies_collection, "a ship", "--expand", row, "-k", "9", "--json")
    assert code == 0, err
    assert sorted(h["row"] for h in json.loads(out)["hits"]) == sorted(rows)


@pytest.mark.parametrize("row", ["24", "-1"])
def test_expand_a_row_that_does_not_exist(capsys: pytest.CaptureFixture, copies_collection: Path, row: str) -> None:
    code, out, err = run(capsys, copies_collection, "--expand", row)
    assert code == 1 and out == "" and err.startswith("error: There is no image number")


@pytest.mark.parametrize("extra", [("--book", "000000102"), ("--order", "year")])
def test_expand_takes_no_book_or_order(capsys: pytest.CaptureFixture, copies_collection: Path,
                                       extra: tuple[str, str]) -> None:
    """--expand lists one group: a --book or --order beside it is refused in one line."""
    code, out, err = run(capsys, copies_collection, "a ship", "--expand", "0", *extra)
    assert code == 1 and out == "" and err.startswith("error: --expand lists one group")


def _a_copy(collection: Path) -> Path:
    """A query image outside the collection: picture 2 at JPEG quality 30 (not one of its stored copies)."""
    from tests.fixtures.near_duplicates import near_duplicates, original

    path = collection.parent / "query-copy.jpg"
    if not path.exists():
        near_duplicates(original("shapes", 702, (160, 120)), ("jpeg30",))["jpeg30"].save(path, "JPEG")
    return path
