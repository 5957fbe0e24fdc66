"""Collections that reference their images (`--images reference`, issue 9 item 3): built, searched,
drawn, verified and described with the images read from their source; missing files give
placeholders and log lines, never a failed answer; moved folders are found again."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import datasets
import numpy as np
import pytest
from PIL import Image

from scripts.build import build_collection
from scripts.cli import main as cli_main
from search_core import layout
from search_core.collection import Collection
from search_core.errors import BuildError, ImageUnavailable
from search_core.references import IMAGE_ROOT_ENV
from search_core.search import SearchService
from search_core.sheet import render_page_sheet
from tests.fixtures.images import make_imagefolder


def build(source: Path, out: Path, tiny_clip: Path, **kwargs):
    return build_collection(str(source), out, model=str(tiny_clip), device="cpu", progress=False, **kwargs)


@pytest.fixture
def place(tmp_path: Path, tiny_clip: Path) -> Path:
    """tmp/place/{images, coll}: 8 images and a collection referencing them."""
    root = tmp_path / "place"
    make_imagefolder(root / "images", n=8)
    build(root / "images", root / "coll", tiny_clip, images="reference")
    return root


def test_a_referenced_collection_stores_paths_not_bytes(place: Path, tiny_clip: Path, tmp_path: Path):
    """The manifest records the storage and the root (absolute and relative to the collection);
    the dataset holds relative paths; the folder is far smaller than a copy."""
    coll = place / "coll"
    manifest = layout.Manifest.read(coll)
    assert manifest.storage == layout.STORAGE_REFERENCE
    assert manifest.image_root.absolute == str((place / "images").absolute())
    assert manifest.image_root.relative == "../images"
    column = datasets.load_from_disk(str(coll / layout.DATASET_DIR))["image"]
    assert all(isinstance(ref, str) and not os.path.isabs(ref) for ref in column)
    assert all((place / "images" / ref).is_file() for ref in column)
    copy = build(place / "images", tmp_path / "copy", tiny_clip)
    arrow = lambda folder: sum(p.stat().st_size for p in (folder / layout.DATASET_DIR).glob("*.arrow"))
    assert arrow(coll) < arrow(tmp_path / "copy") / 4
    assert copy.rows == manifest.rows


def test_images_are_read_from_the_source(place: Path):
    c = Collection.open(place / "coll")
    for row in range(c.rows):
        ref = c.reference(row)
        with Image.open(place / "images" / ref) as source:
            assert c.image(row).size == source.size
        assert c.image_bytes(row) == (place / "images" / ref).read_bytes()


def test_a_missing_source_file_is_a_placeholder_and_a_log_line(place: Path, tiny_clip: Path, caplog):
    """The search still answers; the sheet draws a placeholder naming the file; verify lists it."""
    c = Collection.open(place / "coll")
    gone = c.reference(0)
    (place / "images" / gone).unlink()
    with pytest.raises(ImageUnavailable, match="missing"):
        c.image(0)
    service = SearchService.open(place / "coll", device="cpu")
    hits = service.search_vector(service.collection.embeddings[0], k=8).hits
    assert hits[0].row == 0
    with caplog.at_level(logging.WARNING, logger="search_core.sheet"):
        sheet = render_page_sheet(service.collection, hits)
    assert sheet.width > 0
    assert any("placeholder" in r.getMessage() and Path(gone).name in r.getMessage() for r in caplog.records)


def test_verify_names_missing_source_files(place: Path, capsys):
    refs = [Collection.open(place / "coll").reference(r) for r in range(2)]
    for ref in refs:
        (place / "images" / ref).unlink()
    code = cli_main(["verify", str(place / "coll"), "--no-progress"])
    out = capsys.readouterr().out
    assert code == 1
    [line] = [line for line in out.splitlines() if line.startswith("images:")]
    assert "2 of 8 referenced image files are missing" in line and refs[0] in line
    assert cli_main(["verify", str(place / "coll"), "--quick", "--no-progress"]) == 0   # the bot still starts


def test_verify_names_files_that_changed_size(place: Path, capsys):
    ref = Collection.open(place / "coll").reference(3)
    with open(place / "images" / ref, "ab") as f:
        f.write(b"\0" * 100)
    assert cli_main(["verify", str(place / "coll"), "--no-progress"]) == 1
    assert "1 referenced image files changed size" in capsys.readouterr().out


def test_collection_and_images_moved_together_are_found(place: Path, tmp_path: Path):
    """The root relative to the collection still holds: moving both keeps the images."""
    moved = tmp_path / "elsewhere"
    shutil.move(str(place), str(moved))
    c = Collection.open(moved / "coll")
    assert c.image_root == (moved / "images")
    c.image(0)


def test_images_moved_alone_are_found_through_the_environment(place: Path, tmp_path: Path, monkeypatch, capsys):
    """IMAGESEARCH_IMAGE_ROOT (several folders allowed) or --image-root names the new place."""
    new_root = tmp_path / "nas" / "scans"
    new_root.parent.mkdir()
    shutil.move(str(place / "images"), str(new_root))
    with pytest.raises(ImageUnavailable):
        Collection.open(place / "coll").image(0)
    monkeypatch.setenv(IMAGE_ROOT_ENV, os.pathsep.join([str(tmp_path / "other"), str(new_root)]))
    c = Collection.open(place / "coll")
    assert c.image_root == new_root
    c.image(0)
    monkeypatch.delenv(IMAGE_ROOT_ENV)
    assert cli_main(["verify", str(place / "coll"), "--no-progress"]) == 1
    capsys.readouterr()
    assert cli_main(["verify", str(place / "coll"), "--no-progress", "--image-root", str(new_root)]) == 0
    assert cli_main(["info", str(place / "coll"), "--image-root", str(new_root)]) == 0
    assert f"referenced under {new_root}" in capsys.readouterr().out


def test_building_again_from_the_moved_folder_reuses_every_vector(place: Path, tmp_path: Path, tiny_clip: Path):
    """mv keeps modification times: a build from the new place embeds nothing and records the new root."""
    new_root = tmp_path / "moved-images"
    vectors = (place / "coll" / layout.EMBEDDINGS).read_bytes()
    shutil.move(str(place / "images"), str(new_root))
    summary = build(new_root, place / "coll", tiny_clip, images="reference")
    assert (summary.embedded, summary.changes.kept) == (0, 8)
    assert layout.Manifest.read(place / "coll").image_root.absolute == str(new_root)
    assert (place / "coll" / layout.EMBEDDINGS).read_bytes() == vectors


def test_info_describes_the_storage(place: Path, capsys):
    assert cli_main(["info", str(place / "coll")]) == 0
    out = capsys.readouterr().out
    assert f"referenced under {(place / 'images').absolute()}" in out
    shutil.rmtree(place / "images")
    assert cli_main(["info", str(place / "coll")]) == 0
    assert "NOT FOUND" in capsys.readouterr().out


def test_push_to_hub_refuses_a_referenced_collection_before_any_work(tmp_path: Path, tiny_clip: Path, capsys,
                                                                     monkeypatch):
    make_imagefolder(tmp_path / "images", n=4)
    monkeypatch.setattr(datasets.Dataset, "push_to_hub", lambda *a, **k: pytest.fail("pushed"))
    code = cli_main(["build", str(tmp_path / "images"), "--out", str(tmp_path / "coll"), "--model", str(tiny_clip),
                     "--device", "cpu", "--images", "reference", "--push-to-hub", "me/x", "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "--images copy" in err[0]
    assert not (tmp_path / "coll").exists()


def test_a_source_of_image_bytes_cannot_be_referenced(tmp_path: Path, tiny_clip: Path):
    """A saved dataset holding the bytes has no file to point at: one clear error."""
    from tests.test_build import jpeg_bytes

    folder = tmp_path / "saved"
    datasets.Dataset.from_dict({"image": [{"bytes": jpeg_bytes(1), "path": None}]},
                               features=datasets.Features({"image": datasets.Image()})).save_to_disk(str(folder))
    with pytest.raises(BuildError, match="--images copy"):
        build(folder, tmp_path / "coll", tiny_clip, images="reference")


def test_the_bots_page_over_a_referenced_collection_with_a_missing_file(place: Path):
    """The bot's render_page reads thumbnails from the source; a missing file is a placeholder cell."""
    import io

    from bot.results import Query, render_page

    service = SearchService.open(place / "coll", device="cpu")
    (place / "images" / service.collection.reference(0)).unlink()
    query = Query(label="x", k=8, collection="refs", version="v1",
                  vector=np.asarray(service.collection.embeddings[0], dtype=np.float32))
    rendered = render_page(service, query, 0, max_upload_bytes=10_000_000)
    assert 0 in {h.row for h in rendered.page.hits}
    assert Image.open(io.BytesIO(rendered.sheet)).width > 0
