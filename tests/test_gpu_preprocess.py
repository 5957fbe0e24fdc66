"""scripts.gpu.preprocess: the model's CLIP processor as tensor operations, checked against the
processor itself on Pillow-decoded pixels (whichever backend transformers picks here: Pillow
without torchvision, torchvision with it)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import CLIPImageProcessor

from scripts.gpu.preprocess import ClipPreprocessing, UnsupportedProcessor
from search_core.encoder import Encoder, compare_embeddings
from tests.fixtures.encodings import picture

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)

# Landscape, portrait, tall and wide past 2:1 (where Pillow 13 changes its pass order), square,
# already the target size, smaller than it (enlarged), odd sizes, a large scan.
SIZES = [(400, 300), (300, 400), (225, 1000), (1000, 225), (301, 603), (640, 640), (224, 224),
         (37, 100), (100, 37), (223, 500), (1201, 901), (2400, 1800)]


@pytest.fixture(scope="module")
def encoder(tiny_clip) -> Encoder:
    return Encoder.load(str(tiny_clip), device="cpu", precision="fp32")


def as_tensor(img: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.array(img)).permute(2, 0, 1)


def levels(ours: torch.Tensor, reference: torch.Tensor, pre: ClipPreprocessing) -> torch.Tensor:
    """Absolute differences in 8-bit levels (what one rounding step of the resize moves)."""
    std = torch.tensor(pre.std).view(1, 3, 1, 1)
    return ((ours - reference) * std / pre.rescale).abs()


def test_settings_are_read_from_the_models_processor(encoder) -> None:
    """The tiny CLIP's processor says 32 px: nothing here assumes 224."""
    pre = ClipPreprocessing.from_encoder(encoder)
    assert (pre.shortest_edge, pre.crop, pre.resample) == (32, (32, 32), "bicubic")
    assert pre.mean == pytest.approx(OPENAI_MEAN) and pre.std == pytest.approx(OPENAI_STD)


def test_per_module_overrides_are_followed(encoder) -> None:
    """A sentence-transformers module's processing_kwargs change what its processor does; so here."""
    module = encoder.model[0]
    saved = module.processing_kwargs
    module.processing_kwargs = {"image": {"crop_size": {"height": 24, "width": 20}}}
    try:
        pre = ClipPreprocessing.from_encoder(encoder)
        reference = encoder.preprocess_images([picture(1)])["pixel_values"]
    finally:
        module.processing_kwargs = saved
    assert pre.crop == (24, 20)
    assert levels(pre([as_tensor(picture(1))]), reference, pre).max() <= 2.01


@pytest.mark.parametrize("size", SIZES)
def test_same_pixels_as_the_models_processor(encoder, size) -> None:
    img = picture(sum(size), size)
    pre = ClipPreprocessing.from_encoder(encoder)
    diff = levels(pre([as_tensor(img)]), encoder.preprocess_images([img])["pixel_values"], pre)
    assert diff.max() <= 2.01 and diff.mean() <= 0.05, (diff.max(), diff.mean())


@pytest.mark.parametrize("size", SIZES)
def test_same_pixels_as_a_224_clip_processor(size) -> None:
    """At the real model's 224 px (ViT-B/32's processor settings, OpenAI's mean and std)."""
    processor = CLIPImageProcessor()
    pre = ClipPreprocessing.from_processor(processor)
    assert (pre.shortest_edge, pre.crop) == (224, (224, 224))
    img = picture(sum(size) + 1, size)
    reference = processor(images=[img], return_tensors="pt")["pixel_values"]
    diff = levels(pre([as_tensor(img)]), reference, pre)
    assert diff.max() <= 2.01 and diff.mean() <= 0.05, (diff.max(), diff.mean())


def test_other_settings_are_followed() -> None:
    """Another shortest edge, a non-square crop, bilinear, other mean and std, a rescale factor."""
    processor = CLIPImageProcessor(size={"shortest_edge": 48}, crop_size={"height": 40, "width": 30},
                                   resample=2, image_mean=[0.5, 0.4, 0.3], image_std=[0.2, 0.25, 0.3])
    pre = ClipPreprocessing.from_processor(processor)
    assert (pre.shortest_edge, pre.crop, pre.resample) == (48, (40, 30), "bilinear")
    for size in [(400, 300), (90, 200), (48, 48)]:
        img = picture(3, size)
        reference = processor(images=[img], return_tensors="pt")["pixel_values"]
        ours = pre([as_tensor(img)])
        assert ours.shape == reference.shape == (1, 3, 40, 30)
        assert levels(ours, reference, pre).max() <= 2.01


def test_a_batch_of_mixed_sizes_equals_each_alone(encoder) -> None:
    pre = ClipPreprocessing.from_encoder(encoder)
    images = [as_tensor(picture(i, SIZES[i % 5])) for i in range(12)]
    together = pre(images)
    alone = torch.cat([pre([img]) for img in images])
    assert torch.equal(together, alone)


def test_output_in_the_models_dtype(encoder) -> None:
    pre = ClipPreprocessing.from_encoder(encoder)
    out = pre([as_tensor(picture(1))], dtype=torch.bfloat16)
    assert out.dtype == torch.bfloat16 and out.shape == (1, 3, 32, 32)


def test_embeddings_agree_with_the_processors_through_the_model(encoder) -> None:
    """What matters downstream: the same vectors (issue 13's bar: mean cosine >= 0.999, min >= 0.99)."""
    images = [picture(100 + i, SIZES[i % len(SIZES)]) for i in range(36)]
    pre = ClipPreprocessing.from_encoder(encoder)
    reference = encoder.embed_preprocessed(encoder.preprocess_images(images))
    ours = encoder.embed_preprocessed({"pixel_values": pre([as_tensor(img) for img in images]),
                                       "modality": "image"})
    fidelity = compare_embeddings(reference, ours)
    assert fidelity.mean_cosine >= 0.999 and fidelity.min_cosine >= 0.99, fidelity
    assert fidelity.top_k_overlap >= 0.97, fidelity


@pytest.mark.parametrize("settings,why", [
    ({"resample": 1}, "resample"),                                          # Lanczos
    ({"do_pad": True}, "pads"),
    ({"size": {"shortest_edge": 224, "longest_edge": 400}}, "shortest edge"),
    ({"size": {"height": 224, "width": 224}}, "shortest edge"),
    ({"do_center_crop": False}, "crop"),
    ({"do_resize": False}, "resize"),
    ({"crop_size": {"height": 256, "width": 256}}, "pad"),
])
def test_settings_it_cannot_reproduce_are_refused(settings: dict, why: str) -> None:
    """The build then keeps the CPU path rather than embed differently from queries."""
    with pytest.raises(UnsupportedProcessor, match=why):
        ClipPreprocessing.from_processor(CLIPImageProcessor(), settings)
