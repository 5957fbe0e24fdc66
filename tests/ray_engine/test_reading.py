"""scripts.ray_engine.reading: every source kind read on Ray gives the local engine's vectors,
names, years and skipped files. Object storage is reached through pyarrow's and fsspec's
filesystems, so a ``file://`` folder takes the path an ``s3://`` or ``gs://`` one does."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from scripts.decode import UnusableImage, load_image
from scripts.metadata import metadata_table
from scripts.ray_engine.reading import open_ray_source, path_keys
from search_core.encoder import Encoder
from search_core.errors import BuildError
from tests.ray_engine.shards import jpeg, names, write_parquet_shards, write_webdataset_shards
from tests.ray_engine.test_embed import Shards, by_name, embed
from tests.test_build import BAD_FILES


@pytest.fixture(scope="module")
def encoder(tiny_clip: Path) -> Encoder:
    return Encoder.load(str(tiny_clip), device="cpu", precision="auto")


def local_vector(encoder: Encoder, data: bytes) -> np.ndarray:
    """What the local engine computes for these bytes."""
    return encoder.embed_preprocessed(encoder.preprocess_images([load_image({"bytes": data, "path": None})]))[0]


def local_reason(data: bytes) -> str:
    """What the local engine lists for these bytes."""
    try:
        load_image({"bytes": data, "path": None})
    except UnusableImage as exc:
        return str(exc)
    raise AssertionError("these bytes decode")


def metadata(source) -> list[tuple]:
    table = metadata_table(source.source.dataset, source.source.image_column)
    return list(zip(*(table.column(c).to_pylist() for c in ("file_name", "year", "title", "book_id"))))


# --- An image folder by URL --------------------------------------------------------------------

def test_folder_url_has_the_local_folders_rows_and_metadata(mixed_folder: Path):
    """Same files, names, years and titles as the local engine's imagefolder reading of the folder."""
    local = open_ray_source(str(mixed_folder))
    remote = open_ray_source(f"file://{mixed_folder}")
    assert remote.kind == "image folder" and local.kind == "local"
    assert sorted(metadata(remote)) == sorted(metadata(local))
    assert len(np.unique(remote.keys)) == len(remote.keys)


def test_folder_url_identities_come_from_the_listing(mixed_folder: Path, monkeypatch):
    """An incremental build compares the listing's sizes and times: no image is read to fingerprint it."""
    import scripts.identity
    from scripts.build import _identities

    remote = open_ray_source(f"file://{mixed_folder}").source
    monkeypatch.setattr(scripts.identity, "_read_digest", None)       # any read would fail
    ids = _identities(remote, metadata_table(remote.dataset, remote.image_column))
    paths = [item["path"] for item in remote.dataset[remote.image_column]]
    assert ids.column("key").to_pylist() == paths and all(p.startswith("file://") for p in paths)
    stats = [os.stat(p.removeprefix("file://")) for p in paths]
    assert ids.column("size").to_pylist() == [st.st_size for st in stats]
    assert ids.column("mtime_ns").to_pylist() == [st.st_mtime_ns for st in stats]
    assert ids.column("digest").null_count == len(paths)


def test_folder_url_embeds_as_the_local_engine(ray_session, mixed_folder, tiny_clip, tmp_path, local):
    shards = Shards()
    source, _ = embed_url(f"file://{mixed_folder}", tiny_clip, tmp_path, shards)
    vectors, skipped = by_name(source, shards)
    assert skipped == local["skipped"] and set(vectors) == set(local["vectors"])
    assert min(float(np.dot(vectors[n], local["vectors"][n])) for n in vectors) >= 0.9999


def embed_url(url: str, tiny_clip: Path, tmp_path: Path, shards: Shards):
    return embed(url, tiny_clip, tmp_path / "work", shards)


# --- Parquet shards --------------------------------------------------------------------------

def test_parquet_shards_embed_with_their_names_and_years(ray_session, tmp_path, tiny_clip, encoder):
    files = write_parquet_shards(tmp_path / "pq", n=6, bad=BAD_FILES["truncated.jpg"])
    shards = Shards()
    source, _ = embed_url(f"file://{tmp_path / 'pq'}", tiny_clip, tmp_path, shards)
    assert source.kind == "parquet shards"
    assert [m[0] for m in metadata(source)] == files and metadata(source)[1][1] == 1860
    vectors, skipped = by_name(source, shards)
    assert skipped == [(files[-1], local_reason(BAD_FILES["truncated.jpg"]))]
    assert set(vectors) == set(files[:-1])
    for i, name in enumerate(files[:-1]):
        assert float(np.dot(vectors[name], local_vector(encoder, jpeg(i)))) >= 0.9999


def test_parquet_rows_without_names_need_a_key_column(tmp_path):
    import datasets

    (tmp_path / "pq").mkdir()
    datasets.Dataset.from_dict({"jpg": [jpeg(1), jpeg(2)]}).to_parquet(str(tmp_path / "pq" / "a.parquet"))
    with pytest.raises(BuildError, match="need a name"):
        open_ray_source(f"file://{tmp_path / 'pq'}")
    datasets.Dataset.from_dict({"jpg": [jpeg(1), jpeg(2)], "key": ["a", "b"]}).to_parquet(
        str(tmp_path / "pq" / "a.parquet"))
    source = open_ray_source(f"file://{tmp_path / 'pq'}")
    assert source.source.image_column == "jpg" and len(set(source.keys.tolist())) == 2


# --- WebDataset shards -----------------------------------------------------------------------

def test_webdataset_shards_embed_with_their_json_years(ray_session, tmp_path, tiny_clip, encoder):
    seeds = write_webdataset_shards(tmp_path / "wds", n=6)
    shards = Shards()
    source, run = embed_url(f"file://{tmp_path / 'wds'}", tiny_clip, tmp_path, shards)
    assert source.kind == "webdataset shards"
    assert [(m[0], m[1]) for m in metadata(source)] == [(f"{k}.jpg", seeds[k] + 1300) for k in seeds]
    vectors, skipped = by_name(source, shards)
    assert skipped == [] and run.embedded == len(seeds)
    for key, seed in seeds.items():
        assert float(np.dot(vectors[f"{key}.jpg"], local_vector(encoder, jpeg(seed)))) >= 0.9999


# --- Errors ----------------------------------------------------------------------------------

@pytest.mark.parametrize("make, words", [
    (lambda root: None, "holds no files"),
    (lambda root: (root / "x").mkdir() or (root / "x" / "notes.txt").write_text("hi"), "no image files"),
])
def test_unusable_folder_urls_are_one_clear_error(tmp_path, make, words):
    root = tmp_path / "src"
    root.mkdir()
    make(root)
    with pytest.raises(BuildError, match=words):
        open_ray_source(f"file://{root}")


def test_keys_are_stable_and_distinct():
    assert path_keys(["a/b.jpg", "a/c.jpg"]).tolist() == path_keys(["a/b.jpg", "a/c.jpg"]).tolist()
    assert len(set(path_keys([f"x/{i}.jpg" for i in range(10_000)]).tolist())) == 10_000
    assert names(2)[0] != names(2)[1]
