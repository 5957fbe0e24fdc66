"""scripts/identity.py and scripts/incremental.py: who each source image is, and what an incremental
build reuses, embeds again or drops."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from scripts.identity import digest, source_identities, unique_keys
from scripts.incremental import ADDED, CHANGED, KEPT, from_scratch, plan
from search_core.provenance import SCHEMA, read_files, write_files


def table(rows: list[tuple]) -> pa.Table:
    """rows of (key, size, mtime_ns, digest)."""
    keys, sizes, times, digests = zip(*rows) if rows else ((), (), (), ())
    return pa.table({"key": list(keys), "size": list(sizes), "mtime_ns": list(times), "digest": list(digests)},
                    schema=SCHEMA)


def images(rows: list[tuple[bytes | None, str | None]]) -> pa.Array:
    return pa.array([{"bytes": b, "path": p} for b, p in rows],
                    pa.struct([("bytes", pa.binary()), ("path", pa.string())]))


def never(_row: int) -> bytes | None:
    raise AssertionError("no file should be read")


# --- plan -----------------------------------------------------------------------------------

def test_added_changed_removed_kept_at_once():
    """A new key is added, a new size or time is changed, a key no longer there is removed."""
    old = table([("a.jpg", 10, 1, None), ("b.jpg", 20, 2, None), ("gone.jpg", 30, 3, None), ("c.jpg", 40, 4, None)])
    new = table([("c.jpg", 40, 4, None), ("new.jpg", 5, 5, None), ("a.jpg", 10, 1, None), ("b.jpg", 21, 9, None)])
    p = plan(new, old, never)
    assert p.status.tolist() == [KEPT, ADDED, KEPT, CHANGED]
    assert p.reuse.tolist() == [3, -1, 0, -1]
    assert p.embed.tolist() == [1, 3]
    assert p.counts(embedded_rows=[1, 3]) == {"added": 1, "changed": 1, "removed": 1, "kept": 2}


def test_a_changed_file_that_no_longer_reads_is_removed():
    """Embedding skipped the changed file: its old row is gone, and it is not counted as changed."""
    old = table([("a.jpg", 10, 1, None), ("b.jpg", 20, 2, None)])
    new = table([("a.jpg", 10, 1, None), ("b.jpg", 0, 9, None)])
    assert plan(new, old, never).counts(embedded_rows=[]) == {"added": 0, "changed": 0, "removed": 1, "kept": 1}


def test_digests_decide_when_both_sides_have_them():
    """Bytes in a dataset: equal digests keep the row whatever the sizes say; different ones change it."""
    d1, d2 = digest(b"one"), digest(b"two")
    old = table([("x", None, None, d1), ("y", None, None, d1)])
    new = table([("x", 3, None, d1), ("y", 3, None, d2)])
    assert plan(new, old, never).status.tolist() == [KEPT, CHANGED]


def test_same_size_new_time_is_read_once_and_kept_if_the_bytes_match():
    """cp without -p: only those files are read; equal content keeps the vector."""
    d = digest(b"pixels")
    old = table([("a.jpg", 6, 1, d), ("b.jpg", 6, 1, d), ("c.jpg", 6, 1, None)])
    new = table([("a.jpg", 6, 99, None), ("b.jpg", 6, 99, None), ("c.jpg", 6, 99, None)])
    read = []

    def read_digest(row: int) -> bytes | None:
        read.append(row)
        return d if row == 0 else digest(b"edited")

    p = plan(new, old, read_digest)
    assert p.status.tolist() == [KEPT, CHANGED, CHANGED]     # c: no old digest to compare with
    assert read == [0, 1]


def test_urls_are_the_same_image_while_their_address_is():
    old = table([("https://x/a.jpg", None, None, None)])
    new = table([("https://x/a.jpg", None, None, None), ("https://x/b.jpg", None, None, None)])
    assert plan(new, old, never).status.tolist() == [KEPT, ADDED]


def test_from_scratch_embeds_everything():
    p = from_scratch(3)
    assert p.embed.tolist() == [0, 1, 2] and p.counts([0, 2]) == {"added": 2, "changed": 0, "removed": 0, "kept": 0}


# --- identities -----------------------------------------------------------------------------

def test_local_files_are_keyed_by_path_under_the_root_with_size_and_time(tmp_path: Path):
    (tmp_path / "1850").mkdir()
    a = tmp_path / "1850" / "a.jpg"
    a.write_bytes(b"12345")
    os.utime(a, ns=(1_000_000_000, 2_000_000_000))
    outside = tmp_path.parent / f"{tmp_path.name}-outside.jpg"
    outside.write_bytes(b"1")
    try:
        ids = source_identities(images([(None, str(a)), (None, str(tmp_path / "missing.jpg")), (None, str(outside))]),
                                pa.array(["a.jpg", "missing.jpg", "o.jpg"]), root=tmp_path)
    finally:
        outside.unlink()
    assert ids.column("key").to_pylist() == ["1850/a.jpg", "missing.jpg", str(outside)]
    assert ids.column("size").to_pylist() == [5, None, 1]
    assert ids.column("mtime_ns").to_pylist()[0] == 2_000_000_000
    assert ids.column("digest").to_pylist() == [None, None, None]     # no bytes read


def test_stored_bytes_get_a_digest_and_a_name(tmp_path: Path):
    """A dataset row with bytes: keyed by its path, else its file name, else its digest."""
    ids = source_identities(images([(b"aa", "orig/a.jpg"), (b"bb", None), (b"cc", None)]),
                            pa.array(["a.jpg", "b.jpg", None]))
    assert ids.column("key").to_pylist() == ["orig/a.jpg", "b.jpg", digest(b"cc").hex()]
    assert ids.column("digest").to_pylist() == [digest(b"aa"), digest(b"bb"), digest(b"cc")]
    assert ids.column("size").to_pylist() == [2, 2, 2]


def test_repeated_names_get_numbered_keys():
    assert unique_keys(pa.array(["a", "b", "a", "a", "a#2"])).to_pylist() == ["a", "b", "a#3", "a#4", "a#2"]
    assert unique_keys(pa.array(["x", "y"])).to_pylist() == ["x", "y"]


def test_files_table_round_trips(tmp_path: Path):
    """files.arrow keeps every column, nulls included, and is read memory-mapped."""
    t = table([("a", 1, 2, digest(b"a")), ("b", None, None, None)])
    write_files(tmp_path, t)
    back = read_files(tmp_path)
    assert back.equals(t)
    assert read_files(tmp_path / "none") is None


@pytest.mark.parametrize("n", [0, 1, 70_000])
def test_identities_in_blocks_keep_row_order(n: int):
    """More rows than one block: keys stay in row order."""
    names = [f"n{i}" for i in range(n)]
    ids = source_identities(images([(None, f"https://h/{i}") for i in range(n)]), pa.array(names, pa.string()))
    assert ids.num_rows == n and ids.column("key").to_pylist() == [f"https://h/{i}" for i in range(n)]
    assert np.all(ids.column("size").is_null().to_numpy(zero_copy_only=False))
