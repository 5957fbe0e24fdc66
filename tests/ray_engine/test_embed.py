"""The embed stage on a local Ray (2 CPUs): the local engine's vectors and skipped files, despite
a worker that dies and one that raises, and a re-run that reuses the parts already written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from scripts.metadata import metadata_table
from scripts.ray_engine.decoding import Cropper
from scripts.ray_engine.embed import embed_shards
from scripts.ray_engine.parts import PartsFolder
from scripts.ray_engine.pipeline import resolve_worker_precision
from scripts.ray_engine.plan import plan_workers
from scripts.ray_engine.reading import open_ray_source
from search_core.encoder import Encoder
from tests.ray_engine.faults import dying_embedder
from tests.test_build import BAD_FILES

SHARD = 8


class Shards(dict):
    """What the build's shard writer would get: shard -> (source rows, vectors, [(source row, reason)])."""

    def writer(self, rows: np.ndarray):
        def write(shard, indices, vectors, skipped):
            self[shard] = (rows[indices], vectors, [(int(rows[i]), reason) for i, reason in skipped])
        return write


def embed(folder: Path | str, tiny_clip: Path, work: Path, shards: Shards, *, workers=1, embedder=None, todo=None):
    source = open_ray_source(str(folder))
    rows = np.arange(len(source.keys))
    encoder = Encoder.load(str(tiny_clip), device="cpu", precision="auto")
    plan = plan_workers(2, 0, workers=workers)
    parts = PartsFolder(str(work))
    parts.claim("test")
    kwargs = {"embedder": embedder} if embedder else {}
    run = embed_shards(source, rows, shards=todo if todo is not None else list(range(-(-len(rows) // SHARD))),
                       shard_size=SHARD, write=shards.writer(rows), parts=parts, plan=plan,
                       cropper=Cropper.from_encoder(encoder), model=str(tiny_clip),
                       precision=resolve_worker_precision(plan, "auto"), batch_size=4, part_rows=4,
                       dim=encoder.dim, live=False, **kwargs)
    return source, run


def by_name(source, shards: Shards) -> tuple[dict, list]:
    names = metadata_table(source.source.dataset, source.source.image_column).column("file_name").to_pylist()
    vectors, skipped = {}, []
    for rows, vecs, skips in shards.values():
        vectors.update({names[r]: v for r, v in zip(rows.tolist(), vecs)})
        skipped += [(names[r], reason) for r, reason in skips]
    return vectors, sorted(skipped)


@pytest.fixture(scope="module")
def faulty_run(ray_session, mixed_folder: Path, tiny_clip: Path, tmp_path_factory):
    """Two workers; the first batch kills its worker's process, the next raises an OSError."""
    markers = tmp_path_factory.mktemp("markers")
    shards = Shards()
    source, run = embed(mixed_folder, tiny_clip, tmp_path_factory.mktemp("work"), shards, workers=2,
                        embedder=dying_embedder(markers))
    return source, run, shards, markers


def test_vectors_agree_with_the_local_engine(faulty_run, local):
    source, run, shards, _ = faulty_run
    vectors, _ = by_name(source, shards)
    assert set(vectors) == set(local["vectors"]) and run.embedded == 24
    cosines = [float(np.dot(vectors[n], local["vectors"][n])) for n in vectors]
    assert min(cosines) >= 0.9999, min(cosines)


def test_bad_files_are_skipped_and_listed_as_locally(faulty_run, local):
    source, _, shards, _ = faulty_run
    _, skipped = by_name(source, shards)
    assert skipped == local["skipped"] and len(skipped) == len(BAD_FILES)


def test_every_shard_is_whole_and_in_row_order(faulty_run):
    source, _, shards, _ = faulty_run
    assert sorted(shards) == list(range(-(-len(source.keys) // SHARD)))
    for shard, (rows, vectors, skipped) in shards.items():
        expected = list(range(shard * SHARD, min(len(source.keys), (shard + 1) * SHARD)))
        assert sorted(rows.tolist() + [r for r, _ in skipped]) == expected
        assert rows.tolist() == sorted(rows.tolist()) and len(vectors) == len(rows)


def test_a_worker_that_dies_and_one_that_raises_are_retried(faulty_run):
    """Both faults happened (their markers exist) and the run still embedded every image."""
    _, run, _, markers = faulty_run
    assert (markers / "killed").exists() and (markers / "raised").exists()
    assert run.embedded == 24 and run.resumed == 0


def test_a_rerun_reuses_the_parts_already_written(ray_session, mixed_folder, tiny_clip, tmp_path, local):
    """Parts of an interrupted run (shards not yet written) are assembled, not embedded again."""
    work = tmp_path / "work"
    first = Shards()
    embed(mixed_folder, tiny_clip, work, first, todo=[0, 1])       # an earlier run that got this far
    assert len(PartsFolder(str(work)).paths()) >= 4
    again = Shards()
    source, run = embed(mixed_folder, tiny_clip, work, again)
    assert run.resumed >= 16 and run.embedded == 24 - sum(len(r) for r, _, _ in first.values())
    vectors, skipped = by_name(source, again)
    assert set(vectors) == set(local["vectors"]) and skipped == local["skipped"]
