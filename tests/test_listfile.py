"""The one list-file reader behind the blocklist, the blocked concepts and the takedown list."""

from __future__ import annotations

import pytest

from search_core.listfile import ListFileError, read_list


def test_comments_blank_lines_and_byte_order_mark_are_skipped(tmp_path):
    """Whole-line and trailing comments, blank lines and a BOM never become entries."""
    path = tmp_path / "list.txt"
    path.write_text("\ufeff# heading\n\nkill   # trailing note\n  blow up  \n", encoding="utf-8")
    assert read_list(path) == ["kill", "blow up"]


def test_takedown_names_may_contain_a_hash(tmp_path):
    """With trailing comments off, a file name holding ' #' is kept whole."""
    path = tmp_path / "hidden.txt"
    path.write_text("# withdrawn 2026\n000_[Songs #2]_1850.jpg\n", encoding="utf-8")
    assert read_list(path, trailing_comments=False) == ["000_[Songs #2]_1850.jpg"]


@pytest.mark.parametrize("make", ["missing", "folder", "latin1"])
def test_unreadable_files_name_the_file_but_not_its_content(tmp_path, make):
    """Each failure is one error naming the file and never quoting what is in it."""
    path = tmp_path / "blocked.txt"
    if make == "folder":
        path.mkdir()
    elif make == "latin1":
        path.write_bytes("secretterm caf\xe9".encode("latin-1"))
    with pytest.raises(ListFileError) as err:
        read_list(path, what="Blocklist")
    assert str(path) in str(err.value) and "Blocklist" in str(err.value)
    assert "secretterm" not in str(err.value)


def test_the_caller_chooses_the_error_class(tmp_path):
    """Callers raise their own error type (e.g. the bot's ConfigError) without re-wrapping."""
    class MyError(Exception):
        pass

    with pytest.raises(MyError):
        read_list(tmp_path / "nope.txt", error=MyError)
