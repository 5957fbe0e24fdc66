"""scripts.ray_engine.decoding: decode tasks crop as the model's processor does, and skip bad files
with the local engine's reasons; the worker's finish gives the local engine's pixels exactly."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch

from scripts.decode import UnusableImage, load_image
from scripts.ray_engine.decoding import FINISH, Cropper, decode_batch
from search_core.encoder import Encoder
from tests.fixtures.images import draw_image
from tests.test_build import BAD_FILES


@pytest.fixture(scope="module")
def encoder(tiny_clip: Path) -> Encoder:
    return Encoder.load(str(tiny_clip), device="cpu", precision="fp32")


def jpeg(seed: int, size: tuple[int, int]) -> bytes:
    buf = io.BytesIO()
    draw_image(seed, size).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def batch(items: list[tuple[bytes | None, str | None]]) -> dict[str, np.ndarray]:
    data, paths = np.empty(len(items), object), np.empty(len(items), object)
    data[:], paths[:] = [d for d, _ in items], [p for _, p in items]
    return {"key": np.arange(len(items), dtype=np.uint64), "bytes": data, "path": paths}


def test_crop_then_finish_equals_the_local_engines_preprocessing(encoder: Encoder):
    """Landscape, portrait, small and large images: the same model input, to the last bit."""
    sizes = [(120, 90), (90, 120), (20, 15), (640, 400), (33, 301)]
    blobs = [jpeg(i, size) for i, size in enumerate(sizes)]
    cropper = Cropper.from_encoder(encoder)
    out = decode_batch(batch([(b, None) for b in blobs]), cropper)
    assert out["pixels"].dtype == np.uint8 and out["pixels"].shape == (len(sizes), *cropper.shape)
    assert list(out["reason"]) == [""] * len(sizes)
    finished = encoder.model[0].preprocess(list(out["pixels"]), processing_kwargs=FINISH)["pixel_values"]
    local = encoder.preprocess_images([load_image({"bytes": b, "path": None}) for b in blobs])["pixel_values"]
    assert torch.equal(finished, local)


def test_the_cropper_follows_the_models_settings(encoder: Encoder):
    """The tiny CLIP crops to 32 px; nothing here assumes the real model's 224."""
    assert Cropper.from_encoder(encoder).shape == (3, 32, 32)


def test_bad_files_get_the_local_engines_reasons(encoder: Encoder, tmp_path: Path):
    items = [(data, None) for data in BAD_FILES.values()]
    (tmp_path / "gone.jpg").unlink(missing_ok=True)
    items += [(None, str(tmp_path / "gone.jpg")), (None, None), (jpeg(3, (50, 40)), None)]
    out = decode_batch(batch(items), Cropper.from_encoder(encoder))

    def local_reason(item):
        try:
            load_image({"bytes": item[0], "path": item[1]})
            return ""
        except UnusableImage as exc:
            return str(exc)

    assert list(out["reason"]) == [local_reason(i) for i in items]
    assert all(out["reason"][:-1]) and out["reason"][-1] == ""
    assert not out["pixels"][:-1].any() and out["pixels"][-1].any()     # skipped rows carry zeros


def test_a_path_is_read_when_there_are_no_bytes(encoder: Encoder, tmp_path: Path):
    (tmp_path / "a.jpg").write_bytes(jpeg(5, (60, 45)))
    cropper = Cropper.from_encoder(encoder)
    by_path = decode_batch(batch([(None, str(tmp_path / "a.jpg"))]), cropper)
    by_bytes = decode_batch(batch([(jpeg(5, (60, 45)), None)]), cropper)
    assert np.array_equal(by_path["pixels"], by_bytes["pixels"]) and by_path["reason"][0] == ""


def test_the_gpu_finish_matches_the_processors(encoder: Encoder):
    """The tensor rescale-and-normalise a GPU worker runs (here on the CPU) gives the processor's
    pixels to float rounding, and the same vectors."""
    from scripts.ray_engine.decoding import device_finish

    crops = decode_batch(batch([(jpeg(i, (90 + 7 * i, 70)), None) for i in range(4)]),
                         Cropper.from_encoder(encoder))["pixels"]
    finish = device_finish(encoder)
    assert finish is not None
    ours = finish(crops)
    reference = encoder.model[0].preprocess(list(crops), processing_kwargs=FINISH)
    assert torch.allclose(ours["pixel_values"], reference["pixel_values"], atol=1e-5)
    cosines = (encoder.embed_preprocessed(ours) * encoder.embed_preprocessed(reference)).sum(axis=1)
    assert cosines.min() >= 0.99999
