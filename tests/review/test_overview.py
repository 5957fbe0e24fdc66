"""The overview's own readings: skipped.jsonl and the year histogram."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from review.overview import MAX_BINS, SKIPPED_LISTED, read_skipped, year_histogram


def test_skipped_files_grouped_by_reason_bad_lines_counted(tmp_path: Path) -> None:
    path = tmp_path / "skipped.jsonl"
    entries = [{"file": f"b{i}.jpg", "reason": f"broken image: truncated at byte {i}"} for i in range(3)]
    entries += [{"file": "e.jpg", "reason": "empty file (0 bytes)"}, {"file": "n.txt", "reason": "not an image file"}]
    path.write_text("\n".join(json.dumps(e) for e in entries) + "\n{not json\n\n[1, 2]\n", encoding="utf-8")
    skipped = read_skipped(path)
    assert skipped.total == 5 and skipped.unreadable_lines == 2
    assert skipped.by_reason == (("broken image", 3), ("empty file", 1), ("not an image file", 1))
    assert skipped.listed[0] == ("b0.jpg", "broken image: truncated at byte 0")


def test_skipped_missing_file_is_none_and_long_lists_are_cut(tmp_path: Path) -> None:
    assert read_skipped(tmp_path / "absent.jsonl").total == 0
    path = tmp_path / "skipped.jsonl"
    path.write_text("".join(json.dumps({"file": f"{i}.jpg", "reason": "x"}) + "\n" for i in range(250)))
    skipped = read_skipped(path)
    assert skipped.total == 250 and len(skipped.listed) == SKIPPED_LISTED


def test_year_histogram_counts_every_known_row_once() -> None:
    """Bins cover first..last year, hold every known row once, at most MAX_BINS of them."""
    rng = np.random.default_rng(0)
    for lo, hi in ((1850, 1850), (1850, 1900), (1510, 1900), (1, 9999)):
        years = np.sort(rng.integers(lo, hi + 1, 5000))
        hist = year_histogram(years, rows=5010)
        assert hist is not None
        assert sum(b.count for b in hist.bins) == 5000 and hist.unknown == 10
        assert len(hist.bins) <= MAX_BINS
        assert hist.bins[0].start <= years[0] and hist.bins[-1].end >= years[-1]
        assert all(b.end - b.start + 1 == hist.width for b in hist.bins)
        first_bin = hist.bins[0]
        assert first_bin.count == int(((years >= first_bin.start) & (years <= first_bin.end)).sum())
    assert year_histogram(None, 3) is None
    assert year_histogram(np.array([], dtype=np.int64), 3) is None
