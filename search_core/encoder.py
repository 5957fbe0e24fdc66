"""The CLIP encoder: one model for text and images, vectors L2-normalised at the source.

Normalised here so that inner product is cosine everywhere downstream (the index uses metric ip).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from search_core.errors import BuildError

log = logging.getLogger(__name__)

DEFAULT_MODEL = "clip-ViT-B-32"


def resolve_device(device: str = "auto") -> str:
    """'auto' picks CUDA when a GPU is usable, else the CPU."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@dataclass
class Encoder:
    """A loaded sentence-transformers CLIP. Load once per process: it is the expensive part."""

    model_name: str
    model: object  # sentence_transformers.SentenceTransformer
    device: str
    precision: str = "fp32"

    @classmethod
    def load(cls, model_name: str = DEFAULT_MODEL, device: str = "auto", precision: str = "fp32") -> Encoder:
        """Load by Hub name (e.g. 'clip-ViT-B-32') or from a local folder."""
        from sentence_transformers import SentenceTransformer

        device = resolve_device(device)
        try:
            model = SentenceTransformer(model_name, device=device)
        except Exception as exc:  # noqa: BLE001 - any load failure means the same to the user
            raise BuildError(f"Could not load model {model_name!r}: {type(exc).__name__}: {exc}") from exc
        model.eval()
        return cls(model_name=model_name, model=model, device=device, precision=precision)

    @property
    def dim(self) -> int:
        return int(self.model.get_sentence_embedding_dimension() or len(self.encode_text(["x"])[0]))

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        """float32 [n, dim], unit length."""
        vecs = self.model.encode(list(texts), convert_to_numpy=True, normalize_embeddings=True,
                                 show_progress_bar=False)
        return np.ascontiguousarray(vecs, dtype=np.float32)

    def encode_images(self, images: Sequence[Image.Image], batch_size: int = 32) -> np.ndarray:
        """float32 [n, dim], unit length. Images should already be RGB."""
        vecs = self.model.encode(list(images), batch_size=batch_size, convert_to_numpy=True,
                                 normalize_embeddings=True, show_progress_bar=False)
        return np.ascontiguousarray(vecs, dtype=np.float32)

    # --- Split preprocessing from the model, so a build can overlap the two -----------------
    # preprocess() is pure CPU work on PIL images (resize, crop, normalise) and is safe to run in
    # worker threads or DataLoader workers; embed_preprocessed() runs the model on its output.

    def preprocess_images(self, images: Sequence[Image.Image]) -> dict:
        """Model inputs for a batch of RGB images (a dict holding 'pixel_values')."""
        return self.model.preprocess(list(images))

    def embed_preprocessed(self, features: dict) -> np.ndarray:
        """Run the model on preprocess_images() output: float32 [n, dim], unit length."""
        import torch

        features = {k: (v.to(self.device) if hasattr(v, "to") else v) for k, v in features.items()}
        with torch.inference_mode():
            out = self.model.forward(features)["sentence_embedding"]
            out = torch.nn.functional.normalize(out.float(), dim=-1)
        return np.ascontiguousarray(out.cpu().numpy(), dtype=np.float32)
