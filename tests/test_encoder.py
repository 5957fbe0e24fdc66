"""Encoder precision paths: each cheaper path must still compute CLIP, measured against fp32.

Fidelity is checked on the tiny random CLIP (fast); the full-size figures are in BENCHMARKS.md.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from search_core import encoder as encoder_module
from search_core.encoder import Encoder, compare_embeddings, resolve_device, resolve_precision
from search_core.errors import BuildError, DeviceError
from tests.fixtures.images import draw_image

PROMPTS = [f"a {colour} {thing}" for colour in ("red", "blue", "green", "gold")
           for thing in ("ship", "bird", "castle", "map", "tree", "horse")]


@pytest.fixture(scope="module")
def images() -> list:
    return [draw_image(seed) for seed in range(40)]


@pytest.fixture(scope="module")
def fp32(tiny_clip: Path) -> Encoder:
    return Encoder.load(str(tiny_clip), device="cpu", precision="fp32")


@pytest.fixture(scope="module")
def bf16(tiny_clip: Path) -> Encoder:
    return Encoder.load(str(tiny_clip), device="cpu", precision="bf16")


@pytest.fixture(scope="module")
def int8(tiny_clip: Path) -> Encoder:
    return Encoder.load(str(tiny_clip), device="cpu", precision="int8")


def _images(enc: Encoder, images: list) -> np.ndarray:
    return enc.embed_preprocessed(enc.preprocess_images(images))


def test_bf16_image_embeddings_pass_the_fidelity_check(fp32, bf16, images):
    """bf16 image vectors: mean cosine >= 0.99 to fp32 and top-10 neighbours >= 95% the same."""
    fid = compare_embeddings(_images(fp32, images), _images(bf16, images))
    assert fid.passes, fid


def test_bf16_text_embeddings_pass_the_fidelity_check(fp32, bf16):
    """bf16 text vectors pass the same check as images."""
    fid = compare_embeddings(fp32.encode_text(PROMPTS), bf16.encode_text(PROMPTS))
    assert fid.passes, fid


def test_bf16_casts_the_weights(bf16):
    """bf16 really runs in bfloat16 (a silently fp32 model would pass fidelity and be slow)."""
    vision = bf16.model[0].model.vision_model
    assert next(vision.parameters()).dtype == torch.bfloat16
    assert bf16.precision == bf16.text_precision == "bf16"


def test_int8_quantises_the_linear_layers(int8):
    """int8 replaces every nn.Linear of both towers with a dynamically quantised one."""
    hf = int8.model[0].model
    from torch.ao.nn.quantized.dynamic import Linear as DynamicQuantizedLinear

    assert not any(type(m) is torch.nn.Linear for m in hf.modules())
    assert isinstance(hf.visual_projection, DynamicQuantizedLinear)
    assert isinstance(hf.text_model.encoder.layers[0].mlp.fc1, DynamicQuantizedLinear)


def test_int8_image_embeddings_stay_close_to_fp32(fp32, int8, images):
    """int8 image vectors point the same way as fp32's (a broken path gives cosine near 0).

    Not the full check: on the tiny CLIP int8 keeps ~91% of each top 10 (BENCHMARKS.md), so
    auto never picks int8 where bf16 is native.
    """
    fid = compare_embeddings(_images(fp32, images), _images(int8, images))
    assert fid.mean_cosine >= 0.98, fid


@pytest.mark.parametrize("name", ["fp32", "bf16", "int8"])
def test_every_precision_returns_unit_float32_vectors(name, request, images):
    """Downstream uses inner product as cosine: every path returns float32 of length 1."""
    enc: Encoder = request.getfixturevalue(name)
    for vecs in (enc.encode_text(PROMPTS[:3]), enc.encode_images(images[:3]), _images(enc, images[:3])):
        assert vecs.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-4)


def test_build_path_and_encode_images_agree_in_bf16(bf16, images):
    """embed_preprocessed (the build) and encode_images (queries) give the same bf16 vectors."""
    a = _images(bf16, images[:8])
    b = bf16.encode_images(images[:8], batch_size=8)
    assert np.einsum("ij,ij->i", a, b).min() > 0.999


def test_auto_without_native_bf16_quantises_images_and_keeps_text_fp32(tiny_clip, fp32, monkeypatch):
    """Where bf16 is emulated, auto gives int8 images and leaves the text tower exactly fp32."""
    monkeypatch.setattr(encoder_module, "cpu_has_native_bf16", lambda: False)
    enc = Encoder.load(str(tiny_clip), device="cpu", precision="auto")
    assert (enc.precision, enc.text_precision) == ("int8", "fp32")
    np.testing.assert_array_equal(enc.encode_text(PROMPTS), fp32.encode_text(PROMPTS))


@pytest.mark.parametrize(("native", "expected"), [(True, ("bf16", "bf16")), (False, ("int8", "fp32"))])
def test_auto_on_cpu_follows_native_bf16(native, expected, monkeypatch):
    """auto on a CPU picks bf16 only where the CPU computes it natively."""
    monkeypatch.setattr(encoder_module, "cpu_has_native_bf16", lambda: native)
    assert resolve_precision("auto", "cpu") == expected


def test_auto_on_cuda_is_fp16():
    """auto on a GPU is fp16 for both towers."""
    assert resolve_precision("auto", "cuda:0") == ("fp16", "fp16")


@pytest.mark.parametrize("native", [True, False])
def test_auto_on_mps_never_picks_a_cpu_path(native, monkeypatch):
    """On an Apple GPU, auto is fp32: the CPU's bf16 flags say nothing about it, and int8 dynamic
    quantisation runs on the CPU only."""
    monkeypatch.setattr(encoder_module, "cpu_has_native_bf16", lambda: native)
    assert resolve_precision("auto", "mps") == ("fp32", "fp32")


def test_accelerator_precisions_are_allowed_on_mps():
    assert resolve_precision("fp16", "mps") == ("fp16", "fp16")
    assert resolve_precision("bf16", "mps") == ("bf16", "bf16")


@pytest.mark.parametrize(("device", "cuda_gpus", "mps", "expected"), [
    ("auto", 0, False, "cpu"), ("auto", 2, False, "cuda"), ("cpu", 0, False, "cpu"),
    ("cuda:1", 2, False, "cuda:1"), ("mps", 0, True, "mps"),
])
def test_resolve_device_accepts_devices_that_exist(monkeypatch, device, cuda_gpus, mps, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda_gpus > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: cuda_gpus)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    assert resolve_device(device) == expected


@pytest.mark.parametrize(("device", "cuda_gpus", "words"), [
    ("mps", 1, "mps is not available"), ("cuda", 0, "no CUDA GPU"), ("cuda:0", 0, "no CUDA GPU"),
    ("cuda:2", 2, "has 2 CUDA GPU(s), cuda:0 to cuda:1"), ("cuda:x", 1, "unknown device"),
    ("tpu", 1, "unknown device"),
])
def test_resolve_device_refuses_devices_that_do_not_exist(monkeypatch, device, cuda_gpus, words):
    """One sentence naming what is missing and what to use instead, before any model loads."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda_gpus > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: cuda_gpus)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(DeviceError, match=re.escape(words)):
        resolve_device(device)


@pytest.mark.parametrize(("precision", "device", "words"), [
    ("int8", "cuda", "CPU path"),
    ("int8", "mps", "CPU path"),
    ("fp16", "cpu", "GPU precision"),
    ("float8", "cpu", "Unknown precision"),
])
def test_unusable_precision_is_refused_with_a_reason(precision, device, words):
    """A precision that cannot work (or would be 9x slower) is refused with a clear message."""
    with pytest.raises(BuildError, match=words):
        resolve_precision(precision, device)


def test_fidelity_of_identical_embeddings_is_perfect(fp32, images):
    """The check itself: the same vectors give cosine 1 and full top-10 overlap."""
    vecs = _images(fp32, images)
    fid = compare_embeddings(vecs, vecs.copy())
    assert fid.passes and fid.top_k_overlap == 1.0 and fid.mean_cosine == pytest.approx(1.0, abs=1e-5)


def test_fidelity_fails_for_shuffled_embeddings(fp32, images):
    """The check itself: vectors assigned to the wrong rows fail it."""
    vecs = _images(fp32, images)
    fid = compare_embeddings(vecs, vecs[np.random.default_rng(0).permutation(len(vecs))])
    assert not fid.passes
