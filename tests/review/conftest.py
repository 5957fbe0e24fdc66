"""A collection with everything the report can show, and one report of it written once.

The collection is built by `imagesearch build` with the tiny CLIP from the sample images plus two
broken files (so skipped.jsonl has entries). It then gets one unreadable stored image (as a
damaged copy would have), chosen near-duplicate groups and a chosen weak-match scale, written as a
build writes them: groups.npy, the manifest's `duplicates` and `match_scale`, and checksums that
match, so `imagesearch verify` passes on it.
"""

from __future__ import annotations

import dataclasses
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from datasets import Dataset
from datasets import Image as ImageFeature

from search_core import layout
from search_core.collection import Collection
from search_core.integrity import file_checksums
from tests.fixtures.synthetic_collection import rewrite_dataset

GROUPS = ((0, 1, 2, 3, 5), (10, 11))            # rows of each near-duplicate group
UNREADABLE_ROW = 5
HIDDEN_ROW = 20
DUPLICATE_THRESHOLD = 0.95
WEAK_THRESHOLD = 0.2
MATCH_SCALE = layout.MatchScale(probes=295, percentiles={"5": 0.15, "10": WEAK_THRESHOLD, "50": 0.3},
                                weak_percentile=10, weak_below=WEAK_THRESHOLD)
SECRET_TERM = "zzqqxxterm"                      # in the blocklist; must never reach the page
SECRET_CONCEPT = "qqconceptmarkerqq"            # in the concepts file; must never reach the page
OWN_PROMPTS = "[Curator's own]\nlocal: the town hall -- our own building\nships: a sailing ship at sea\n"


def _break_one_image(ds: Dataset) -> Dataset:
    ds = ds.cast_column("image", ImageFeature(decode=False))

    def corrupt(example: dict[str, Any], idx: int) -> dict[str, Any]:
        if idx == UNREADABLE_ROW:
            example["image"] = {"bytes": b"this is not an image", "path": None}
        return example

    return ds.map(corrupt, with_indices=True).cast_column("image", ImageFeature())


def record_groups_and_scale(collection: Path) -> None:
    """GROUPS and MATCH_SCALE written as a build writes them: groups.npy (each row's group is its
    smallest row), the manifest's `duplicates` and `match_scale`, and every checksum recomputed."""
    manifest = layout.Manifest.read(collection)
    group_of = np.arange(manifest.rows, dtype=np.int32)
    for members in GROUPS:
        group_of[list(members)] = min(members)
    np.save(collection / layout.GROUPS, group_of)
    sizes = np.bincount(group_of, minlength=manifest.rows)
    duplicates = layout.DuplicateInfo(threshold=DUPLICATE_THRESHOLD, groups=int(np.count_nonzero(sizes)),
                                      grouped_rows=int(sizes[sizes > 1].sum()), largest=int(sizes.max()))
    dataclasses.replace(manifest, duplicates=duplicates, match_scale=MATCH_SCALE,
                        checksums=file_checksums(collection)).write(collection)


@pytest.fixture(scope="session")
def review_collection(tmp_path_factory: pytest.TempPathFactory, tiny_clip: Path,
                      sample_images: tuple[Path, list]) -> Path:
    from scripts.build import build_collection

    source = tmp_path_factory.mktemp("review_source") / "images"
    shutil.copytree(sample_images[0], source)
    (source / "1850" / "000000001_0_000001_1_[Broken]_1850.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (source / "1870" / "000000002_0_000001_1_[Empty]_1870.jpg").write_bytes(b"")
    out = tmp_path_factory.mktemp("review_collections") / "embellishments"
    build_collection(str(source), out, model=str(tiny_clip), device="cpu")
    rewrite_dataset(out, _break_one_image)
    record_groups_and_scale(out)
    return out


@dataclass(frozen=True)
class WrittenReport:
    index: Path
    collection: Path
    hidden_file: str
    blocklist: Path
    concepts: Path


@pytest.fixture(scope="session")
def written_report(tmp_path_factory: pytest.TempPathFactory, review_collection: Path) -> WrittenReport:
    """The default prompts plus the curator's own, moderation on, one row hidden."""
    from review.report import ReviewOptions, write_review

    inputs = tmp_path_factory.mktemp("review_inputs")
    hidden_file = Collection.open(review_collection).metadata(HIDDEN_ROW)["file_name"]
    (inputs / "hidden.txt").write_text(f"{hidden_file}\nnot-in-this-collection.jpg\n", encoding="utf-8")
    (inputs / "blocklist.txt").write_text(f"# terms\nsavage\n{SECRET_TERM}\n", encoding="utf-8")
    (inputs / "concepts.txt").write_text(f"executions: a hanging\nviolence: {SECRET_CONCEPT}\n", encoding="utf-8")
    (inputs / "mine.txt").write_text(OWN_PROMPTS, encoding="utf-8")
    out = tmp_path_factory.mktemp("review_out") / "report"
    summary = write_review(ReviewOptions(
        collection=review_collection, out=out, prompts=f"+{inputs / 'mine.txt'}",
        blocklist=inputs / "blocklist.txt", concepts=inputs / "concepts.txt", hidden=inputs / "hidden.txt"),
        progress=lambda _: None, env={"IMAGESEARCH_IMAGE_CONCEPT_THRESHOLD": "0.1"})
    return WrittenReport(index=summary.index_html, collection=review_collection, hidden_file=hidden_file,
                         blocklist=inputs / "blocklist.txt", concepts=inputs / "concepts.txt")
