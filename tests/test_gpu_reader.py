"""scripts.gpu.reader: a whole batch's bytes, on threads for files, skip reasons as today."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import fsspec
import pytest

from scripts.decode import UnusableImage, read_bytes
from scripts.gpu.reader import read_batch
from tests.fixtures.encodings import jpeg, png


class NoThreads:
    """An executor that fails the test if used: bytes already in memory need no thread."""

    def map(self, *args, **kwargs):
        raise AssertionError("the pool was used for bytes already in memory")


def _reason(item) -> str:
    with pytest.raises(UnusableImage) as info:
        read_bytes(item)
    return str(info.value)


def test_files_are_read_in_order_on_the_pool(tmp_path: Path) -> None:
    files = []
    for i in range(40):
        path = tmp_path / f"{i:03d}.jpg"
        path.write_bytes(jpeg(i, (32, 24)))
        files.append(path)
    items = [{"path": str(p), "bytes": None} for p in files]
    with ThreadPoolExecutor(8) as pool:
        batch = read_batch(list(range(100, 140)), items, pool)
    assert batch.positions == list(range(100, 140))
    assert batch.data == [p.read_bytes() for p in files]
    assert batch.skipped == []


def test_arrow_bytes_are_taken_as_they_are_without_threads() -> None:
    """A saved or Hub dataset's rows hold the encoded bytes: nothing to read, nothing decoded."""
    items = [{"bytes": jpeg(1, (16, 16)), "path": "a.jpg"}, {"bytes": png(2, (16, 16)), "path": None}]
    batch = read_batch([7, 3], items, NoThreads())  # type: ignore[arg-type]
    assert batch.positions == [7, 3]
    assert batch.data == [items[0]["bytes"], items[1]["bytes"]]


def test_unreadable_files_are_listed_with_the_cpu_builds_reasons(tmp_path: Path) -> None:
    """The reasons fsspec's errors gave before local files were opened directly, unchanged."""
    good = tmp_path / "good.jpg"
    good.write_bytes(jpeg(1, (16, 16)))
    folder = tmp_path / "a_folder.jpg"
    folder.mkdir()
    items = [{"path": str(tmp_path / "missing.jpg"), "bytes": None}, {"path": str(good), "bytes": None},
             {"path": str(folder), "bytes": None}, {"path": None, "bytes": None}]
    with ThreadPoolExecutor(4) as pool:
        batch = read_batch([0, 1, 2, 3], items, pool)
    assert batch.positions == [1]
    assert batch.skipped == [(0, _reason(items[0])), (2, _reason(items[2])), (3, _reason(items[3]))]
    assert [reason for _, reason in batch.skipped] == ["file not found", "unreadable file: Is a directory",
                                                       "no image data"]


def test_remote_paths_go_through_fsspec() -> None:
    """Archive members and URLs (zip://...::https://..., memory://...) are read with fsspec."""
    data = jpeg(3, (16, 16))
    with fsspec.open("memory://gpu-reader/x.jpg", "wb") as f:
        f.write(data)
    assert read_bytes({"path": "memory://gpu-reader/x.jpg", "bytes": None}) == data
    assert read_batch([0], ["memory://gpu-reader/x.jpg"]).data == [data]


def test_empty_files_are_read_and_left_to_the_decoder(tmp_path: Path) -> None:
    """A 0-byte file is readable; the decoder then skips it with its usual reason."""
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    batch = read_batch([0], [{"path": str(empty), "bytes": None}])
    assert batch.data == [b""]
