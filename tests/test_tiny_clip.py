"""The tiny CLIP fixture must behave like a usable CLIP, or every ranking test above it is void."""

from __future__ import annotations

import numpy as np
from sentence_transformers import SentenceTransformer

from tests.fixtures.images import draw_image


def test_loads_through_the_real_sentence_transformers_path(tiny_clip):
    """SentenceTransformer(path) loads the fixture exactly as it loads the Hub's clip-ViT-B-32."""
    model = SentenceTransformer(str(tiny_clip), device="cpu")
    assert model.encode(["a ship"]).shape == (1, 32)
    assert model.encode([draw_image(1)]).shape == (1, 32)


def test_distinct_prompts_get_distinct_embeddings(tiny_clip):
    """Default random init maps all prompts to one direction; the widened fixture must not."""
    model = SentenceTransformer(str(tiny_clip), device="cpu")
    prompts = ["a steam engine", "a cat", "portrait of a woman", "map of london", "ship at sea"]
    vecs = model.encode(prompts, normalize_embeddings=True)
    sims = vecs @ vecs.T
    off_diagonal = sims[~np.eye(len(prompts), dtype=bool)]
    assert off_diagonal.max() < 0.9


def test_distinct_images_get_distinct_embeddings(tiny_clip):
    """Different generated pictures are told apart; the same picture encodes identically."""
    model = SentenceTransformer(str(tiny_clip), device="cpu")
    vecs = model.encode([draw_image(i) for i in range(6)] + [draw_image(0)], normalize_embeddings=True)
    sims = vecs @ vecs.T
    assert sims[0, 6] > 0.999
    off_diagonal = sims[:6, :6][~np.eye(6, dtype=bool)]
    assert off_diagonal.max() < 0.95
