"""The report folder: only a previous report is replaced, atomically; failures leave DIR as it was."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from review import folder
from review.folder import MARKER, ReportFolderError, is_report, write_folder


def fill_with(text: str):
    def fill(tmp: Path) -> None:
        (tmp / "index.html").write_text(text, encoding="utf-8")
    return fill


def test_new_folder_then_replaced(tmp_path: Path) -> None:
    out = tmp_path / "sub" / "report"
    write_folder(out, fill_with("one"), marker={"n": 1})
    assert (out / "index.html").read_text() == "one" and is_report(out)
    assert json.loads((out / MARKER).read_text())["n"] == 1
    (out / "stale.jpg").write_bytes(b"x")
    write_folder(out, fill_with("two"), marker={})
    assert (out / "index.html").read_text() == "two"
    assert not (out / "stale.jpg").exists()
    assert sorted(p.name for p in out.parent.iterdir()) == ["report"]   # nothing left beside it


def test_empty_folder_is_used(tmp_path: Path) -> None:
    out = tmp_path / "report"
    out.mkdir()
    write_folder(out, fill_with("x"), marker={})
    assert is_report(out)


@pytest.mark.parametrize("make", ["file", "photos", "collection-like"])
def test_refuses_what_is_not_a_report(tmp_path: Path, make: str) -> None:
    out = tmp_path / "out"
    if make == "file":
        out.write_text("my notes")
    else:
        out.mkdir()
        (out / "holiday.jpg").write_bytes(b"precious")
        if make == "collection-like":
            (out / MARKER).write_text('{"generator": "something else"}')
    with pytest.raises(ReportFolderError, match="refusing|is a file"):
        write_folder(out, fill_with("x"), marker={})
    if make != "file":
        assert (out / "holiday.jpg").read_bytes() == b"precious"


def test_a_failure_while_writing_keeps_the_old_report(tmp_path: Path) -> None:
    out = tmp_path / "report"
    write_folder(out, fill_with("old"), marker={})

    def broken(tmp: Path) -> None:
        (tmp / "half.jpg").write_bytes(b"x")
        raise OSError(28, "No space left on device")

    with pytest.raises(ReportFolderError, match="No space left"):
        write_folder(out, broken, marker={})
    assert (out / "index.html").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]


def test_leftovers_of_a_killed_run(tmp_path: Path) -> None:
    """A half-written temp folder is removed; an old report moved aside before a kill comes back."""
    out = tmp_path / "report"
    write_folder(out, fill_with("old"), marker={})
    out.rename(tmp_path / ".report.old-999")
    (tmp_path / ".report.tmp-998").mkdir()
    folder._remove_leftovers(out)
    assert (out / "index.html").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]
