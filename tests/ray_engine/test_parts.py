"""scripts.ray_engine.parts: part files in the work folder, their key, and reading them back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from scripts.ray_engine.parts import KeyLookup, Part, PartsFolder
from search_core.errors import BuildError


def part(keys, skipped=(), dim=4, seed=0) -> Part:
    rng = np.random.default_rng(seed)
    return Part(keys=np.asarray(keys, np.uint64), vectors=rng.standard_normal((len(keys), dim)).astype(np.float32),
                skipped_keys=np.asarray([k for k, _ in skipped], np.uint64),
                skipped_reasons=[r for _, r in skipped])


def test_a_part_reads_back_as_written(tmp_path: Path):
    folder = PartsFolder(str(tmp_path / "work"))
    folder.claim("k")
    written = part([5, 1, 9], skipped=[(7, "empty file")])
    path = folder.write(written)
    read = folder.read(path)
    assert read.keys.tolist() == [5, 1, 9] and np.array_equal(read.vectors, written.vectors)
    assert read.skipped_keys.tolist() == [7] and read.skipped_reasons == ["empty file"]
    assert folder.read(path, vectors=False).vectors.size == 0
    assert folder.paths() == [path]


def test_the_same_batch_written_twice_is_one_part(tmp_path: Path):
    """A batch Ray runs again (its worker died after writing) replaces its part, not adds one."""
    folder = PartsFolder(str(tmp_path))
    folder.claim("k")
    assert folder.write(part([1, 2], seed=1)) == folder.write(part([1, 2], seed=2))
    assert len(folder.paths()) == 1
    folder.write(part([3]))
    assert len(folder.paths()) == 2


def test_parts_of_another_build_are_discarded(tmp_path: Path):
    folder = PartsFolder(str(tmp_path))
    assert folder.claim("first") is False
    folder.write(part([1]))
    assert folder.claim("first") is True and len(folder.paths()) == 1
    assert folder.claim("second") is False and folder.paths() == []


def test_a_folder_of_other_files_is_never_emptied(tmp_path: Path):
    (tmp_path / "notes.txt").write_text("the user's")
    with pytest.raises(BuildError, match="not this build's parts"):
        PartsFolder(str(tmp_path)).claim("k")
    assert (tmp_path / "notes.txt").read_text() == "the user's"


def test_temporary_files_are_not_parts(tmp_path: Path):
    """A worker killed while writing leaves a temporary file, which is never read as a part."""
    folder = PartsFolder(str(tmp_path))
    folder.claim("k")
    (tmp_path / "part-abc.npz.tmp-1234").write_bytes(b"half")
    assert folder.paths() == []


def test_a_file_url_works_like_a_path(tmp_path: Path):
    folder = PartsFolder(f"file://{tmp_path}")
    folder.claim("k")
    folder.check_writable()
    path = folder.write(part([4]))
    assert PartsFolder(str(tmp_path)).read(path).keys.tolist() == [4]


def test_unwritable_work_folder_is_a_clear_error(tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(BuildError, match="Choose another --work-dir"):
        PartsFolder(str(blocker / "work")).claim("k")


def test_key_lookup_finds_positions_and_marks_strangers():
    lookup = KeyLookup(np.array([30, 10, 20], np.uint64))
    assert lookup(np.array([10, 99, 30, 20], np.uint64)).tolist() == [1, -1, 0, 2]
    assert KeyLookup(np.zeros(0, np.uint64))(np.array([1], np.uint64)).tolist() == [-1]
