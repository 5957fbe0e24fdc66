"""The build's near-duplicate grouping: planted copies are grouped and distinct rows are not, on
synthetic vectors under every kind of index the build makes, and on generated images (re-encoded
and rescaled copies) through `imagesearch build` with the tiny CLIP."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from scripts import grouping as grouping_module
from scripts.build import build_collection
from scripts.build_cli import format_summary
from scripts.grouping import check_threshold, find_duplicate_groups, no_groups
from search_core import layout
from search_core.collection import Collection
from search_core.errors import BuildError
from tests.fixtures.synthetic_collection import unit_vectors, vectors_with_groups

N, DIM = 4000, 64
SIZES = (2, 2, 2, 3, 4, 7, 11, 150)


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two group arrays put the same rows together (ids may differ)."""
    pairs = set(zip(a.tolist(), b.tolist()))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


@pytest.mark.parametrize("cells", ["one cell", "k-means cells"])
def test_planted_copies_are_grouped_and_nothing_else(cells: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Copies at cosine ~0.9999 form exactly the planted groups; distinct random rows (cosine
    under 0.6 in 64 dimensions) stay alone, in one cell and split into k-means cells."""
    if cells == "k-means cells":
        monkeypatch.setattr(grouping_module, "SINGLE_CELL_ROWS", 0)
    vectors, truth = vectors_with_groups(N, DIM, SIZES, seed=5)
    grouping = find_duplicate_groups(vectors, 0.95)
    assert same_partition(grouping.group_of, truth)
    assert np.array_equal(grouping.group_of, truth)          # ids are each group's smallest row
    assert grouping.info.grouped_rows == sum(SIZES)
    assert grouping.info.largest == max(SIZES)
    assert grouping.info.groups == N - sum(SIZES) + len(SIZES)


def test_threshold_is_a_cosine_cut() -> None:
    """A pair at cosine 0.96 is grouped and one at 0.94 is not, at threshold 0.95 (scored exactly);
    at threshold 0.93 both are."""
    rng = np.random.default_rng(1)
    base = unit_vectors(1000, DIM, seed=2)

    def at_cosine(v: np.ndarray, cosine: float) -> np.ndarray:
        other = rng.standard_normal(DIM).astype(np.float32)
        other -= (other @ v) * v
        other /= np.linalg.norm(other)
        return (cosine * v + np.sqrt(1 - cosine**2) * other).astype(np.float32)

    vectors = np.concatenate([base, at_cosine(base[10], 0.96)[None], at_cosine(base[20], 0.94)[None]])
    groups = find_duplicate_groups(vectors, 0.95).group_of
    assert groups[1000] == groups[10] and groups[1001] == 1001 and groups[20] == 20
    looser = find_duplicate_groups(vectors, 0.93).group_of
    assert looser[1000] == looser[10] and looser[1001] == looser[20]


def test_no_near_duplicates_gives_singletons() -> None:
    vectors = unit_vectors(500, DIM, seed=4)
    grouping = find_duplicate_groups(vectors)
    assert np.array_equal(grouping.group_of, np.arange(500))
    assert grouping.info.grouped_rows == 0 and grouping.info.largest == 1
    assert np.array_equal(no_groups(500).group_of, grouping.group_of)


def test_one_row() -> None:
    assert find_duplicate_groups(unit_vectors(1, DIM)).group_of.tolist() == [0]


@pytest.mark.parametrize("value", [0, -0.5, 1.01, float("nan"), "high"])
def test_bad_threshold_is_refused(value: object) -> None:
    with pytest.raises(BuildError, match="duplicate-threshold"):
        check_threshold(value)


# --- through the build, with generated images and the tiny CLIP ----------------------------------

def test_build_groups_copies_of_generated_images(copies_collection: Path) -> None:
    """Each original and its re-encoded and rescaled copies share one group; the other nine
    pictures are alone; the groups file and the manifest agree."""
    collection = Collection.open(copies_collection)
    names = collection.dataset["file_name"]
    group_of = np.load(copies_collection / layout.GROUPS)
    by_picture: dict[int, set[int]] = {}
    for row, name in enumerate(names):
        picture = int(name.split("_")[2])            # the page number is the original's index
        by_picture.setdefault(picture, set()).add(int(group_of[row]))
    assert all(len(groups) == 1 for groups in by_picture.values())
    assert len({next(iter(g)) for g in by_picture.values()}) == 12
    assert collection.manifest.duplicates.grouped_rows == 15
    assert collection.manifest.duplicates.threshold == 0.97


def test_build_threshold_option(copies_folder: Path, copies_collection: Path, tiny_clip: Path,
                                tmp_path: Path) -> None:
    """--duplicate-threshold 1 groups only identical vectors (none here); a bad value is refused
    before anything is read or written."""
    out = tmp_path / "strict"
    summary = build_collection(str(copies_folder), out, model=str(tiny_clip), device="cpu", progress=False,
                               duplicate_threshold=1.0)
    assert summary.duplicates.grouped_rows == 0 and summary.duplicates.threshold == 1.0
    assert "Near-duplicates (cosine >= 1): none." in format_summary(summary)
    grouped = replace(summary, duplicates=Collection.open(copies_collection).manifest.duplicates)
    assert "Near-duplicates (cosine >= 0.97): 15 images in 3 groups, the largest 5" in format_summary(grouped)
    with pytest.raises(BuildError, match="duplicate-threshold"):
        build_collection(str(copies_folder), tmp_path / "bad", model=str(tiny_clip), device="cpu",
                         duplicate_threshold=1.5)
    assert not (tmp_path / "bad").exists()
