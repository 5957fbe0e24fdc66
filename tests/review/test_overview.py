"""The overview: skipped.jsonl, the year histogram, and the build's facts as the typed manifest
and the collection's groups give them (or "not recorded" for a collection built before them)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from review.overview import (
    MAX_BINS,
    SKIPPED_LISTED,
    biggest_groups,
    build_overview,
    read_skipped,
    year_histogram,
)
from review.prompts import Probe, ProbeSet
from review.report import build_report
from search_core.collapse import DuplicateGroups
from search_core.collection import Collection
from search_core.layout import MatchScale
from search_core.search import SearchService
from tests.fixtures.synthetic_collection import FakeEncoder, unit_vectors, write_collection
from tests.review.page import Node, parse

SCALE = MatchScale(probes=40, percentiles={"50": 0.3, "5": 0.1, "10": 0.2, "25": 0.25}, weak_percentile=10,
                   weak_below=0.2)


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


def test_biggest_groups_from_the_collections_groups_hidden_rows_left_out() -> None:
    """Biggest first (ties: lowest group id), first `members` rows each; a hidden row leaves its
    group's size and rows, and a group left with one row is no group."""
    groups = DuplicateGroups(np.array([0, 0, 0, 3, 4, 4, 6, 7, 7, 7, 7, 11, 11], dtype=np.int32))
    found = biggest_groups(groups, limit=5, members=3, exclude_rows=np.empty(0, np.int64))
    assert [(g.group, g.size, g.rows) for g in found] == [
        (7, 4, (7, 8, 9)), (0, 3, (0, 1, 2)), (4, 2, (4, 5)), (11, 2, (11, 12))]
    hidden = biggest_groups(groups, limit=5, members=6, exclude_rows=np.array([8, 7, 9, 5, 12]))
    assert [(g.group, g.size, g.rows) for g in hidden] == [(0, 3, (0, 1, 2))]
    assert biggest_groups(groups, limit=1, members=2, exclude_rows=np.array([1]))[0].rows == (7, 8)
    assert biggest_groups(DuplicateGroups(np.arange(4, dtype=np.int32)), limit=5, members=3,
                          exclude_rows=np.empty(0, np.int64)) == []
    assert biggest_groups(None, limit=5, members=3, exclude_rows=np.empty(0, np.int64)) is None


def test_overview_reads_the_typed_manifest(tmp_path: Path) -> None:
    """Groups, their threshold and the weak-match scale come from what the collection records;
    a collection built before them has None for each, and storage "copy"."""
    group_of = np.array([0, 0, 2, 3, 3, 3, 6, 7], dtype=np.int32)
    recorded = Collection.open(write_collection(tmp_path / "new", unit_vectors(8, 16), groups=group_of,
                                                match_scale=SCALE))
    overview = build_overview(recorded, exact_index=True, hidden_listed=0, hidden_rows=np.array([1]),
                              groups_shown=5, group_members=6)
    assert [(g.size, g.rows) for g in overview.duplicate_groups] == [(3, (3, 4, 5))]
    assert overview.duplicate_threshold == recorded.manifest.duplicates.threshold
    assert overview.match_scale == SCALE
    assert overview.match_percentiles == (("p5", 0.1), ("p10", 0.2), ("p25", 0.25), ("p50", 0.3))
    assert overview.storage == "copy" and overview.text_recall is None

    old = Collection.open(write_collection(tmp_path / "old", unit_vectors(8, 16)))
    overview = build_overview(old, exact_index=True, hidden_listed=0, hidden_rows=np.empty(0, np.int64),
                              groups_shown=5, group_members=6)
    assert overview.duplicate_groups is None and overview.duplicate_threshold is None
    assert overview.match_scale is None and overview.match_percentiles == ()


def _report(folder: Path, out: Path, *, match_scale: MatchScale | None) -> Node:
    collection = Collection.open(write_collection(folder, unit_vectors(12, 16), match_scale=match_scale))
    service = SearchService(collection, FakeEncoder(dim=16))
    probes = ProbeSet(tuple(Probe(text, "things", "Everyday prompts") for text in ("a ship", "a map", "a cat")))
    build_report(service, probes, out, k=3, progress=lambda _: None, workers=1)
    return parse(out / "index.html")


def _weak_badges(page: Node) -> list[bool]:
    """Per prompt: marked weak (True), marked not weak (False); prompts marked neither are left out."""
    marks = []
    for article in page.find_all("article", "probe"):
        badges = [b.text for b in article.find_all("span", "badge")]
        if "weak match" in badges or "not weak" in badges:
            marks.append("weak match" in badges)
    return marks


def test_an_old_collection_reads_not_recorded_and_marks_nothing_weak(tmp_path: Path) -> None:
    page = _report(tmp_path / "old", tmp_path / "old-report", match_scale=None)
    text = page.find_id("overview").text
    assert "Not recorded by this collection's build, so no prompt is marked weak" in text
    assert "Near-duplicate groups Not recorded by this collection's build" in text
    assert "Recall@10, text queries 1 (exact search)" in text
    assert len(page.find_all("article", "probe")) == 3 and _weak_badges(page) == []
    assert "weak matches" not in page.find_id("contents").text


def test_weak_marks_are_searchs_own(tmp_path: Path) -> None:
    """A cut above every score marks every prompt, one below every score none, as search marks them."""
    for cut, marked in ((2.0, True), (-2.0, False)):
        scale = MatchScale(probes=3, percentiles={"10": cut}, weak_percentile=10, weak_below=cut)
        page = _report(tmp_path / f"c{cut}", tmp_path / f"report{cut}", match_scale=scale)
        assert _weak_badges(page) == [marked] * 3
        assert f"{3 if marked else 0} weak matches" in page.text
        assert "the 10th percentile below" in page.find_id("overview").text
