"""`imagesearch info COLLECTION`: the facts of a collection, as text and as JSON, and one-line errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from scripts.build import build_collection
from scripts.cli import main as cli_main
from search_core import layout
from tests.fixtures.images import draw_image
from tests.test_build import BAD_FILES


def info_text(folder: Path, capsys, *args: str) -> tuple[int, str, str]:
    code = cli_main(["info", str(folder), *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def with_skipped(tmp_path_factory: pytest.TempPathFactory, tiny_clip: Path) -> Path:
    """A collection of 3 good images from 1900, 2 without a year, and the 5 bad files of test_build."""
    src = tmp_path_factory.mktemp("mixed")
    (src / "1900").mkdir()
    for i in range(3):
        draw_image(i).save(src / "1900" / f"good{i}.jpg", "JPEG")
    for name, data in BAD_FILES.items():
        (src / "1900" / name).write_bytes(data)
    (src / "misc").mkdir()
    for i in range(2):
        draw_image(50 + i).save(src / "misc" / f"undated{i}.jpg", "JPEG")
    out = tmp_path_factory.mktemp("coll") / "mixed"
    build_collection(str(src), out, model=str(tiny_clip), device="cpu", progress=False)
    return out


def test_text_names_every_fact(collection_dir: Path, tiny_clip: Path, capsys):
    """Rows, model, precision, index, build, storage, disk, years, skipped, groups, weak-match cut."""
    code, out, err = info_text(collection_dir, capsys)
    assert code == 0 and err == ""
    manifest = layout.Manifest.read(collection_dir)
    lines = dict(line.split(":", 1) for line in out.splitlines() if not line.startswith(" "))
    assert lines["Rows"].strip().startswith("24 ")
    assert str(tiny_clip) in lines["Model"] and manifest.precision in lines["Model"]
    assert lines["Index"].strip() == "Flat, exact search"
    assert manifest.built_at in lines["Built"]
    assert "copied into the collection" in lines["Images"]
    assert lines["Years"].strip() == "1850-1900"
    assert lines["Skipped"].strip() == "none"
    assert f"{manifest.match_scale.weak_below:.3f}" in lines["Weak match"]
    assert "KiB" in lines["Disk"] or "MiB" in lines["Disk"]


def test_json_holds_the_same_facts(collection_dir: Path, capsys):
    """--json: the manifest's numbers, the disk size of every file, the year range."""
    code, out, _ = info_text(collection_dir, capsys, "--json")
    assert code == 0
    data = json.loads(out)
    manifest = layout.Manifest.read(collection_dir)
    assert (data["rows"], data["model"], data["embedding_dim"], data["precision"]) == (
        24, manifest.model, manifest.embedding_dim, manifest.precision)
    assert data["index"]["spec"] == "Flat" and data["index"]["recall_at_10"] is None
    assert data["images"]["mode"] == "copy"
    assert data["disk_bytes"] == sum(p.stat().st_size for p in collection_dir.rglob("*") if p.is_file())
    assert data["years"] == {"first": 1850, "last": 1900, "unknown": 0}
    assert data["duplicates"]["threshold"] == manifest.duplicates.threshold
    assert data["weak_match"]["below"] == manifest.match_scale.weak_below


def test_skipped_files_and_unknown_years(with_skipped: Path, capsys):
    """The skipped count with the first files and their reasons; rows without a year are counted."""
    code, out, _ = info_text(with_skipped, capsys)
    assert code == 0
    assert "5 file(s) not embedded" in out
    listed = [line.strip() for line in out.splitlines() if line.startswith(" ")]
    assert len(listed) == 5 and {line.split(":")[0] for line in listed} == set(BAD_FILES)
    assert "1900-1900 (2 rows without a year)" in out
    data = json.loads(info_text(with_skipped, capsys, "--json")[1])
    assert data["skipped"] == 5 and data["years"] == {"first": 1900, "last": 1900, "unknown": 2}
    assert {s["file"] for s in data["skipped_first"]} == set(BAD_FILES)


def test_a_missing_folder_is_one_error_line(tmp_path: Path, capsys):
    code, out, err = info_text(tmp_path / "nowhere", capsys)
    assert code == 1 and out == ""
    assert err.startswith("error: ") and err.count("\n") == 1 and "does not exist" in err


def test_a_folder_that_is_not_a_collection_is_one_error_line(tmp_path: Path, capsys):
    code, _, err = info_text(tmp_path, capsys)
    assert code == 1 and err.count("\n") == 1 and "manifest.json is missing" in err


@pytest.mark.parametrize("damage", ["index", "manifest", "embeddings"])
def test_a_broken_collection_is_one_error_line(collection_dir: Path, tmp_path: Path, capsys, damage: str):
    """A truncated index, unreadable manifest or missing embeddings: one line naming the file, no traceback."""
    coll = Path(shutil.copytree(collection_dir, tmp_path / "coll"))
    if damage == "index":
        (coll / layout.INDEX).write_bytes((coll / layout.INDEX).read_bytes()[:100])
        named = layout.INDEX
    elif damage == "manifest":
        (coll / layout.MANIFEST).write_text("{not json", encoding="utf-8")
        named = layout.MANIFEST
    else:
        (coll / layout.EMBEDDINGS).unlink()
        named = layout.EMBEDDINGS
    code, out, err = info_text(coll, capsys)
    assert code == 1 and out == ""
    assert err.startswith("error: ") and err.count("\n") == 1 and named in err
    assert "Traceback" not in err
