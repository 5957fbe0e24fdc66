"""A collection with everything the report can show, and one report of it written once.

The collection is built by `imagesearch build` with the tiny CLIP from the sample images plus two
broken files (so skipped.jsonl has entries). Its dataset then gains a near-duplicate group column
and one unreadable stored image, the way later builds and damaged copies look.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from datasets import Dataset
from datasets import Image as ImageFeature

from review import signals
from tests.fixtures.synthetic_collection import rewrite_dataset

GROUPS = {100: (0, 1, 2, 3, 5), 7: (10, 11)}     # near-duplicate group -> rows
UNREADABLE_ROW = 5
HIDDEN_ROW = 20
WEAK_THRESHOLD = 0.2
SECRET_TERM = "zzqqxxterm"                      # in the blocklist; must never reach the page
SECRET_CONCEPT = "qqconceptmarkerqq"            # in the concepts file; must never reach the page
OWN_PROMPTS = "[Curator's own]\nlocal: the town hall -- our own building\nships: a sailing ship at sea\n"


def _add_groups_and_break_one_image(ds: Dataset) -> Dataset:
    group_of = {row: group for group, rows in GROUPS.items() for row in rows}
    ds = ds.add_column("near_duplicate_group", [group_of.get(i, -1) for i in range(len(ds))])
    ds = ds.cast_column("image", ImageFeature(decode=False))

    def corrupt(example: dict[str, Any], idx: int) -> dict[str, Any]:
        if idx == UNREADABLE_ROW:
            example["image"] = {"bytes": b"this is not an image", "path": None}
        return example

    return ds.map(corrupt, with_indices=True).cast_column("image", ImageFeature())


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
    rewrite_dataset(out, _add_groups_and_break_one_image)
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
    """The default prompts plus the curator's own, moderation on, one row hidden, a weak-match scale."""
    from review.report import ReviewOptions, write_review
    from search_core.collection import Collection

    inputs = tmp_path_factory.mktemp("review_inputs")
    hidden_file = Collection.open(review_collection).metadata(HIDDEN_ROW)["file_name"]
    (inputs / "hidden.txt").write_text(f"{hidden_file}\nnot-in-this-collection.jpg\n", encoding="utf-8")
    (inputs / "blocklist.txt").write_text(f"# terms\nsavage\n{SECRET_TERM}\n", encoding="utf-8")
    (inputs / "concepts.txt").write_text(f"a hanging\nviolence: {SECRET_CONCEPT}\n", encoding="utf-8")
    (inputs / "mine.txt").write_text(OWN_PROMPTS, encoding="utf-8")
    out = tmp_path_factory.mktemp("review_out") / "report"
    original = signals.raw_manifest

    def with_weak_scale(collection: Any) -> dict:
        return {**original(collection), "weak_match": {
            "threshold": WEAK_THRESHOLD, "prompts": 295, "quantiles": {"p5": 0.15, "p10": 0.2, "p50": 0.3}}}

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(signals, "raw_manifest", with_weak_scale)
        summary = write_review(ReviewOptions(
            collection=review_collection, out=out, prompts=f"+{inputs / 'mine.txt'}",
            blocklist=inputs / "blocklist.txt", concepts=inputs / "concepts.txt", hidden=inputs / "hidden.txt"),
            progress=lambda _: None, env={"IMAGESEARCH_IMAGE_CONCEPT_THRESHOLD": "0.1"})
    return WrittenReport(index=summary.index_html, collection=review_collection, hidden_file=hidden_file,
                         blocklist=inputs / "blocklist.txt", concepts=inputs / "concepts.txt")
