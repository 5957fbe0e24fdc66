"""RayEngine behind the build's engine interface (scripts/engines): for the same job it writes the
shard files the local engine writes, so gather, index and write cannot tell them apart."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from scripts.engines import EmbedJob
from scripts.engines.local import LocalEngine
from scripts.ray_engine.engine import RayEngine, parts_url
from scripts.ray_engine.options import RayOptions
from scripts.shards import n_shards, read_shard, shard_path
from search_core.encoder import Encoder
from search_core.errors import BuildError

SHARD = 8


def job_for(src, rows: np.ndarray, work: Path, model: Path, device: str, precision: str) -> EmbedJob:
    return EmbedJob(source=src, rows=rows, work=work, key="test-job", shard_size=SHARD, model=str(model),
                    device=device, precision=precision, batch_size=4)


@pytest.fixture(scope="module")
def both(ray_session, mixed_folder: Path, tiny_clip: Path, tmp_path_factory) -> dict:
    """An incremental-style job (every row but each third one) embedded by both engines; Ray's
    workers write their parts to a --work-dir of their own."""
    parts = tmp_path_factory.mktemp("ray-parts") / "parts"
    engine = RayEngine(RayOptions(workers=1, work_dir=str(parts)))
    with engine.session():
        src = engine.open_source(str(mixed_folder))
        rows = np.flatnonzero(np.arange(len(src.dataset)) % 3 != 0)
        device, precision = engine.resolve(None, "auto")
        encoder = Encoder.load(str(tiny_clip), device="cpu", precision=precision)
        ray_job = job_for(src, rows, tmp_path_factory.mktemp("ray") / "work", tiny_clip, device, precision)
        report = engine.embed(ray_job, encoder=encoder, live=False)
    local_job = job_for(src, rows, tmp_path_factory.mktemp("local") / "work", tiny_clip, "cpu", precision)
    local_report = LocalEngine().embed(local_job, encoder=encoder, live=False)
    return {"ray": ray_job, "local": local_job, "report": report, "local_report": local_report, "parts": parts}


def test_shards_hold_the_local_engines_rows_reasons_and_vectors(both):
    ray, local = both["ray"], both["local"]
    assert both["report"].embedded == both["local_report"].embedded > 0
    skipped = 0
    for s in range(n_shards(len(ray.rows), SHARD)):
        mine, theirs = read_shard(shard_path(ray.work, s)), read_shard(shard_path(local.work, s))
        assert mine.rows.tolist() == theirs.rows.tolist()
        assert list(zip(mine.skipped_rows.tolist(), mine.skipped_reasons)) == \
            list(zip(theirs.skipped_rows.tolist(), theirs.skipped_reasons))
        assert np.einsum("ij,ij->i", mine.vectors, theirs.vectors).min() >= 0.9999
        skipped += len(mine.skipped_rows)
    assert skipped > 0, "the job should include some of the bad files"


def test_parts_in_a_work_dir_of_their_own_are_removed_once_in_shards(both):
    """Only this build's folder inside --work-dir goes; the folder itself stays."""
    assert both["parts"].is_dir() and list(both["parts"].iterdir()) == []


def test_collections_sharing_a_work_dir_get_folders_of_their_own(tmp_path):
    urls = {parts_url("s3://bucket/work/", tmp_path / f".{name}.build") for name in ("a", "b")}
    assert urls == {"s3://bucket/work/a.build", "s3://bucket/work/b.build"}
    assert parts_url(None, tmp_path / ".a.build") == str(tmp_path / ".a.build" / "ray-parts")


def test_an_embeddings_column_build_is_not_for_ray(ray_session, mixed_folder):
    with pytest.raises(BuildError, match="--embeddings-column"):
        RayEngine().open_source(str(mixed_folder), embeddings_column="embedding")


def test_used_outside_its_session_is_a_programming_error():
    with pytest.raises(RuntimeError, match="session"):
        RayEngine().resolve(None, "auto")
