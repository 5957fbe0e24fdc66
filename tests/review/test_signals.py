"""The adapter for optional facts: present in several shapes, absent, or malformed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from review import signals
from search_core.collection import Collection
from tests.fixtures.synthetic_collection import unit_vectors, write_collection


def test_text_recall_under_index_or_top_level() -> None:
    assert signals.text_recall({"index": {"spec": "Flat", "text_recall_at_10": 0.981}}) == 0.981
    assert signals.text_recall({"text_recall_at_10": "0.9"}) == 0.9
    assert signals.text_recall({"index": {"recall_at_10": 0.99}}) is None
    assert signals.text_recall({"index": {"text_recall_at_10": "n/a"}}) is None


def test_storage_is_copy_unless_the_manifest_says_otherwise() -> None:
    assert signals.storage({}) == "copy"
    assert signals.storage({"storage": "reference"}) == "reference"
    assert signals.storage({"storage": {"mode": "reference", "root": "/x"}}) == "reference"


def test_weak_match_scale_as_the_build_records_it() -> None:
    """The build's match_scale: the cut, percentiles as "p5".., prompts and the cut's percentile."""
    scale = signals.weak_match_scale({"match_scale": {"probes": 291, "weak_percentile": 10, "weak_below": 0.21,
                                                      "percentiles": {"50": 0.27, "5": 0.2, "10": 0.21}}})
    assert scale is not None and scale.threshold == 0.21 and scale.prompts == 291 and scale.percentile == 10
    assert [label for label, _ in scale.quantiles] == ["p5", "p10", "p50"]
    assert scale.is_weak(0.2) and not scale.is_weak(0.21) and scale.is_weak(None)


def test_weak_match_scale_other_spellings_and_absence() -> None:
    from_scores = signals.weak_match_scale({"weak_match": {"threshold": 0.5, "scores": list(np.linspace(0, 1, 101))}})
    assert from_scores is not None and dict(from_scores.quantiles)["p50"] == pytest.approx(0.5)
    assert from_scores.prompts == 101
    assert signals.weak_match_scale({}) is None
    assert signals.weak_match_scale({"match_scale": None}) is None
    assert signals.weak_match_scale({"match_scale": {"percentiles": {"5": 0.2}}}) is None
    assert signals.weak_match_scale({"weak_match": [0.1, 0.2]}) is None


def _with_groups(folder: Path, group_of: list[int]) -> Collection:
    write_collection(folder, unit_vectors(len(group_of), 8))
    np.save(folder / signals.GROUPS_FILE, np.asarray(group_of, dtype=np.int32))
    return Collection.open(folder)


def test_near_duplicate_groups_biggest_first_hidden_rows_left_out(tmp_path: Path) -> None:
    """Groups as the build writes them (each row's group is its smallest row; alone = itself)."""
    group_of = [0, 0, 0, 3, 4, 4, 6, 7, 7, 7, 7, 11]
    collection = _with_groups(tmp_path / "c", group_of)
    found = signals.near_duplicate_groups(collection, limit=5, members=3)
    assert [(g.group, g.size, g.rows) for g in found] == [(7, 4, (7, 8, 9)), (0, 3, (0, 1, 2)), (4, 2, (4, 5))]
    hidden = signals.near_duplicate_groups(collection, limit=1, members=6, exclude_rows=np.array([7, 8, 9]))
    assert [(g.group, g.size) for g in hidden] == [(0, 3)]


def test_no_or_unusable_group_file_is_none(tmp_path: Path) -> None:
    collection = Collection.open(write_collection(tmp_path / "c", unit_vectors(4, 8)))
    assert signals.near_duplicate_groups(collection, limit=5, members=3) is None
    np.save(tmp_path / "c" / signals.GROUPS_FILE, np.zeros(3, np.int32))      # wrong length
    assert signals.near_duplicate_groups(collection, limit=5, members=3) is None
    (tmp_path / "c" / signals.GROUPS_FILE).write_bytes(b"not numpy")
    assert signals.near_duplicate_groups(collection, limit=5, members=3) is None


def test_duplicate_threshold_and_hit_group_size() -> None:
    assert signals.duplicate_threshold({"duplicates": {"threshold": 0.96, "groups": 10}}) == 0.96
    assert signals.duplicate_threshold({"duplicates": None}) is None

    @dataclass
    class CollapsedHit:
        group_size: int

    assert signals.group_size(CollapsedHit(7)) == 7
    assert signals.group_size(object()) == 1
