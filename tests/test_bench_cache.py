"""The benchmarks' cached synthetic data: a benchmark that asks for fewer queries than the cache
holds reuses it (regenerating it also rebuilt every collection made from it, minutes at 1M rows)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from benchmarks.synthetic import synthetic_source


@pytest.fixture(autouse=True)
def _environment_restored():
    """benchmarks.common sets TQDM_DISABLE and friends when imported: they must not reach the
    subprocesses of later tests (a build on a terminal then drew no bars)."""
    before = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(before)


def test_a_source_with_enough_queries_is_reused_and_a_short_one_regenerated(tmp_path):
    _, first, _ = synthetic_source(2000, kind="easy", queries=50, cache=tmp_path)
    stamp = next(tmp_path.glob("source-easy-2000-*")) / "synthetic.json"
    written = stamp.stat().st_mtime_ns
    _, fewer, _ = synthetic_source(2000, kind="easy", queries=20, cache=tmp_path)
    assert stamp.stat().st_mtime_ns == written
    assert fewer.shape == (20, first.shape[1]) and np.array_equal(fewer, first[:20])
    _, more, _ = synthetic_source(2000, kind="easy", queries=80, cache=tmp_path)
    assert len(more) == 80 and '"queries": 80' in stamp.read_text()
