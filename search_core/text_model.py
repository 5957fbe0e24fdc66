"""Prompts in 50+ languages: a text-only model aligned with the collection's image model.

sentence-transformers' ``clip-ViT-B-32-multilingual-v1`` is a multilingual DistilBERT distilled
from ``clip-ViT-B-32``'s text tower (multilingual knowledge distillation, arXiv:2004.09813): its
vector for a sentence in any of 50+ languages lands where CLIP puts the English sentence, so it
encodes prompts while the collection's image vectors stay as they are. One loaded `TextModel`
can serve every collection embedded with the same image model.

Any other model would be silent garbage, so a text model is checked against the image model at
load: both encode 64 of the shipped English probe prompts (``search_core.probes``); the text
model's vectors must be close to the image model's own (mean cosine >= 0.5) and must tell the
prompts apart (each prompt's own vector among its 5 nearest for >= 30% of them, chance being 8%),
or it is refused with a `TextModelMismatchError`. Measured on tiny students distilled from the
tiny test CLIP (``benchmarks/bench_text_model.py``, BENCHMARKS.md): students of width 256-768
reached cosine 0.59-0.88 and top-5 0.52-1.00; an unrelated model and a student of another CLIP
0.03 / -0.08 and 0.06 / 0.08. The real multilingual-v1 was trained with a squared-error loss onto
CLIP's own vectors, so on plain English descriptions it belongs with the well-distilled students
(it could not be downloaded here to measure).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from search_core.errors import BuildError, TextModelMismatchError

log = logging.getLogger(__name__)

# The model to use with clip-ViT-B-32 collections (README, --text-model).
MULTILINGUAL_CLIP_B32 = "sentence-transformers/clip-ViT-B-32-multilingual-v1"

ALIGNMENT_MIN_COSINE = 0.5
ALIGNMENT_MIN_TOP5 = 0.3
TOP_N = 5
# Probes encoded by both models at load. With real-size models, 64 took 9.5 s on the 2-core
# machine under load (load average 10; bench_text_model); all 291 would take 4.5 times that.
# Evenly spaced, 64 still cover every theme of the list.
ALIGNMENT_PROBES = 64


@dataclass(frozen=True)
class Alignment:
    """How close a text model's vectors are to an image model's own text vectors, on the probes."""

    probes: int
    mean_cosine: float     # mean over probes of cos(text model's vector, image model's vector)
    top5: float            # share of probes whose own image-model vector is among the 5 nearest

    @property
    def aligned(self) -> bool:
        return self.mean_cosine >= ALIGNMENT_MIN_COSINE and self.top5 >= ALIGNMENT_MIN_TOP5

    def __str__(self) -> str:
        return f"mean cosine {self.mean_cosine:.2f}, own vector in the top {TOP_N} for {self.top5:.0%}"


def measure_alignment(text_vectors: np.ndarray, reference_vectors: np.ndarray) -> Alignment:
    """Compare two models' vectors of the same prompts, row for row (any norm; both [n, dim])."""
    a = _unit(text_vectors)
    b = _unit(reference_vectors)
    if a.shape != b.shape or a.ndim != 2 or len(a) <= TOP_N:
        raise ValueError(f"need two [n > {TOP_N}, dim] arrays of one shape, got {a.shape} and {b.shape}")
    scores = a @ b.T
    own = np.diag(scores)
    better = (scores > own[:, None]).sum(axis=1)       # prompts scoring above a prompt's own vector
    return Alignment(probes=len(a), mean_cosine=float(own.mean()), top5=float(np.mean(better < TOP_N)))


def alignment_probes(n: int = ALIGNMENT_PROBES) -> list[str]:
    """n probe prompts evenly spaced through the shipped list (all of them if it is shorter)."""
    from search_core.probes import load_probe_prompts

    probes = load_probe_prompts()
    return [probes[i] for i in np.linspace(0, len(probes) - 1, min(n, len(probes))).round().astype(int)]


class TextModel:
    """A loaded sentence-transformers text model whose vectors live in an image model's space.

    Load once per process and share: `check_aligned` measures each image model once.
    """

    def __init__(self, encoder: Any) -> None:
        self.encoder = encoder                      # search_core.encoder.Encoder, used for text only
        self.model_name: str = encoder.model_name
        self._lock = threading.Lock()
        self._checked: dict[int, tuple[Any, Alignment]] = {}

    @classmethod
    def load(cls, model_name: str, device: str = "auto") -> TextModel:
        """Load by Hub name or local folder (full precision: one prompt at a time is cheap)."""
        from search_core.encoder import Encoder

        try:
            return cls(Encoder.load(model_name, device=device, precision="fp32"))
        except BuildError as exc:
            raise TextModelMismatchError(f"Could not load the text model {model_name!r}: "
                                         f"{str(exc).split(': ', 1)[-1]}") from exc

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        """float32 [n, dim], unit length."""
        return self.encoder.encode_text(texts)

    def check_aligned(self, image_encoder: Any, prompts: Sequence[str] | None = None) -> Alignment:
        """The alignment with ``image_encoder``'s own text vectors; TextModelMismatchError when the
        dimensions differ or it is below the thresholds. Measured once per image encoder."""
        with self._lock:
            cached = self._checked.get(id(image_encoder))
            if cached is None or cached[0] is not image_encoder:
                try:
                    outcome: Alignment | TextModelMismatchError = self._measure(image_encoder, prompts)
                except TextModelMismatchError as exc:
                    outcome = exc
                cached = self._checked[id(image_encoder)] = (image_encoder, outcome)  # holding it keeps the id unique
        if isinstance(cached[1], TextModelMismatchError):
            raise cached[1]
        return cached[1]

    def _measure(self, image_encoder: Any, prompts: Sequence[str] | None) -> Alignment:
        prompts = list(prompts if prompts is not None else alignment_probes())
        image_name = getattr(image_encoder, "model_name", "the collection's model")
        ours = self.encode_text(prompts)
        theirs = np.asarray(image_encoder.encode_text(prompts), dtype=np.float32)
        if ours.shape[1] != theirs.shape[1]:
            raise TextModelMismatchError(
                f"The text model {self.model_name} gives {ours.shape[1]}-dimensional vectors but the "
                f"collection's model {image_name} gives {theirs.shape[1]}: it was not made for this collection.")
        alignment = measure_alignment(ours, theirs)
        log.info("text model %s against %s on %d probes: %s", self.model_name, image_name, alignment.probes,
                 alignment)
        if not alignment.aligned:
            raise TextModelMismatchError(
                f"The text model {self.model_name} does not encode into the space of the collection's model "
                f"{image_name} ({alignment}; at least {ALIGNMENT_MIN_COSINE} and {ALIGNMENT_MIN_TOP5:.0%} "
                f"needed): its prompts would match images at random. Use a text model distilled from "
                f"{image_name}, such as {MULTILINGUAL_CLIP_B32} for clip-ViT-B-32.")
        return alignment


def _unit(vectors: np.ndarray) -> np.ndarray:
    v = np.asarray(vectors, dtype=np.float32)
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)
