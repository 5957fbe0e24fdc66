"""The build's embedding stream: overlapped preparation, order kept, bad files listed."""

from __future__ import annotations

import numpy as np
import pytest

from scripts.embedding import embed_stream
from search_core.encoder import Encoder


@pytest.fixture(scope="module")
def encoder(tiny_clip) -> Encoder:
    return Encoder.load(str(tiny_clip), device="cpu", precision="fp32")


def _batches(items, size):
    for start in range(0, len(items), size):
        chunk = items[start:start + size]
        yield list(range(start, start + len(chunk))), (lambda chunk=chunk: chunk)


def test_stream_keeps_order_and_matches_direct_encoding(encoder, sample_images):
    """Batches come back in order, each vector equal to encoding that image on its own."""
    _, samples = sample_images
    items = [{"path": str(s.path), "bytes": None} for s in samples[:10]]
    out = list(embed_stream(encoder, _batches(items, 4)))
    assert [b.positions for b in out] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    from PIL import Image

    direct = encoder.encode_images([Image.open(s.path).convert("RGB") for s in samples[:10]])
    np.testing.assert_allclose(np.concatenate([b.vectors for b in out]), direct, atol=1e-5)


def test_a_broken_file_is_listed_not_raised(encoder, sample_images, tmp_path):
    """A file that cannot be decoded is reported with its position; the rest are embedded."""
    _, samples = sample_images
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    items = [{"path": str(samples[0].path), "bytes": None}, {"path": str(bad), "bytes": None}]
    (batch,) = list(embed_stream(encoder, _batches(items, 2)))
    assert batch.positions == [0] and batch.vectors.shape[0] == 1
    assert [pos for pos, _ in batch.skipped] == [1]
