"""The CLIP encoder: one model for text and images, vectors L2-normalised at the source.

Normalised here so that inner product is cosine everywhere downstream (the index uses metric ip).

Precision paths. On a 2-core CPU the fp32 ViT-B/32 is the bottleneck of a build (~17 images/s), so
speed comes from a cheaper model path, each checked against fp32 (``compare_embeddings``):

==========  ====================================  ==========  ===============  ==========
precision   how                                   images/s    text p50 (ms)    mean cos
==========  ====================================  ==========  ===============  ==========
fp32        as loaded                             16.6        25.3             1
bf16        weights cast to bfloat16              63.1        8.9              0.99996
bf16 amp    ``torch.autocast`` (not offered)      60.5        21.4             0.99996
int8        dynamic quantisation of nn.Linear     58.8        6.5              0.9996
fp16        weights cast to float16 (GPU only)    1.8         -                -
==========  ====================================  ==========  ===============  ==========

(random-weight ViT-B/32, batch 32, 2 threads, AMD EPYC Zen 4 with AVX512-BF16; full figures and
the top-10 overlaps in BENCHMARKS.md.) bf16 weights need a CPU with native bf16 (AVX512-BF16 or
AMX); elsewhere oneDNN emulates it slowly, so ``auto`` falls back to int8 for the image tower.
The text tower stays bf16/fp32 under ``auto``: int8 text queries moved the text-to-image top 10
more than the 0.95 overlap the fidelity check allows (0.92 against an fp32 collection).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image

from search_core.errors import BuildError, DeviceError
from search_core.query_threads import QUERY_THREADS

log = logging.getLogger(__name__)

DEFAULT_MODEL = "clip-ViT-B-32"

PRECISIONS = ("auto", "fp32", "bf16", "int8", "fp16")

# The fidelity check a precision must pass against fp32 to be used by default (issue #4).
FIDELITY_MIN_COSINE = 0.99
FIDELITY_MIN_OVERLAP = 0.95

# transformers' CLIPModel keeps the two towers apart, so each can get its own precision.
_IMAGE_PARTS = ("vision_model", "visual_projection")
_TEXT_PARTS = ("text_model", "text_projection")


def resolve_device(device: str = "auto") -> str:
    """'auto' picks CUDA when a GPU is usable, else the CPU; a named accelerator must exist here.

    Checked before any model is loaded, so a wrong choice is one sentence naming the fix instead
    of a failure deep inside torch (or, on MPS, a crash at the first query).
    """
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return device
    if device == "mps":
        if not torch.backends.mps.is_available():
            raise DeviceError("device mps is not available on this machine (it needs an Apple-silicon Mac and "
                              "a PyTorch build with MPS); use auto or cpu.")
        return device
    kind, _, index = device.partition(":")
    if kind != "cuda" or (index and not index.isdigit()):
        raise DeviceError(f"unknown device {device!r}; use auto, cpu, cuda, cuda:N or mps.")
    if not torch.cuda.is_available():
        raise DeviceError(f"device {device} is not available: PyTorch sees no CUDA GPU on this machine "
                          "(none installed, no driver, or a CPU-only PyTorch build); use auto or cpu.")
    count = torch.cuda.device_count()
    if index and int(index) >= count:
        raise DeviceError(f"device {device} does not exist: this machine has {count} CUDA GPU(s), "
                          f"cuda:0 to cuda:{count - 1}.")
    return device


@lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """True where bf16 matrix products run in hardware (x86 AVX512-BF16 or AMX, Arm BF16).

    torch's own check (``mkldnn._is_mkldnn_bf16_supported``) is true on any AVX-512 CPU, where
    oneDNN emulates bf16 and can be slower than fp32, so the CPU flags are read instead.
    """
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            text = f.read()
    except OSError:
        return False
    flags = set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            flags.update(line.split(":", 1)[-1].split())
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})


def resolve_precision(precision: str, device: str) -> tuple[str, str]:
    """(image precision, text precision) for a requested precision on a resolved device.

    ``auto``: fp16 on CUDA; fp32 on MPS (nothing was measured there, and fp32 is always correct);
    on a CPU, the fastest path that passed the fidelity check here: bf16 for both towers with
    native bf16, else int8 images and fp32 text. The CPU choices read the CPU's own flags, so they
    never apply to an accelerator: int8 dynamic quantisation runs on the CPU only.
    """
    if precision not in PRECISIONS:
        raise BuildError(f"Unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}.")
    cuda = device.startswith("cuda")
    accelerator = device != "cpu"
    if precision == "auto":
        if cuda:
            return "fp16", "fp16"
        if accelerator:
            return "fp32", "fp32"
        return ("bf16", "bf16") if cpu_has_native_bf16() else ("int8", "fp32")
    if precision == "int8" and accelerator:
        raise BuildError(f"int8 is a CPU path (dynamic quantisation); on {device} use fp16, fp32 or auto.")
    if precision == "fp16" and not accelerator:
        raise BuildError("fp16 is a GPU precision: on the CPU it runs about 9x slower than fp32. "
                         "Use auto, bf16 or int8 instead.")
    return precision, precision


def quiet_model_loading() -> None:
    """For entry points: no weight-loading progress bar and no library notices on stderr.

    A terminal user or a bot operator should see our progress and errors, not transformers'
    "Loading weights" bar or its note that torchvision is absent (the PIL image processor it
    falls back to is the one measured and used here). Only entry points call this: it changes
    the libraries' process-wide logging.
    """
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        return
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


@dataclass
class Encoder:
    """A loaded sentence-transformers CLIP. Load once per process: it is the expensive part.

    ``precision`` is what image vectors are computed in (the manifest records it);
    ``text_precision`` what text queries are computed in.
    """

    model_name: str
    model: object  # sentence_transformers.SentenceTransformer
    device: str
    precision: str = "fp32"
    text_precision: str | None = None

    def __post_init__(self) -> None:
        if self.text_precision is None:
            self.text_precision = self.precision

    @classmethod
    def load(cls, model_name: str = DEFAULT_MODEL, device: str = "auto", precision: str = "auto") -> Encoder:
        """Load by Hub name (e.g. 'clip-ViT-B-32') or from a local folder, in `precision`.

        precision: auto | fp32 | bf16 | int8 | fp16 (see the module docstring for what each costs).
        """
        from sentence_transformers import SentenceTransformer

        device = resolve_device(device)
        image_precision, text_precision = resolve_precision(precision, device)
        try:
            model = SentenceTransformer(model_name, device=device)
        except Exception as exc:
            raise BuildError(f"Could not load model {model_name!r}: {type(exc).__name__}: {exc}") from exc
        model.eval()
        _apply_precision(model, image_precision, text_precision)
        log.info("model %s on %s: images %s, text %s", model_name, device, image_precision, text_precision)
        return cls(model_name=model_name, model=model, device=device, precision=image_precision,
                   text_precision=text_precision)

    @property
    def dim(self) -> int:
        # sentence-transformers 6 renamed the method and warns on every call of the old name
        # (a FutureWarning in the build's output); older releases only have the old one.
        dimension = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        return int(dimension() or len(self.encode_text(["x"])[0]))

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        """float32 [n, dim], unit length."""
        with QUERY_THREADS.busy():          # a search meanwhile leaves the cores to torch
            vecs = self.model.encode(list(texts), convert_to_numpy=True, normalize_embeddings=False,
                                     show_progress_bar=False)
        return _unit_rows(vecs)

    def encode_images(self, images: Sequence[Image.Image], batch_size: int = 32) -> np.ndarray:
        """float32 [n, dim], unit length. Images should already be RGB."""
        with QUERY_THREADS.busy():
            vecs = self.model.encode(list(images), batch_size=batch_size, convert_to_numpy=True,
                                     normalize_embeddings=False, show_progress_bar=False)
        return _unit_rows(vecs)

    # --- Split preprocessing from the model, so a build can overlap the two -----------------
    # preprocess() is pure CPU work on PIL images (resize, crop, normalise) and is safe to run in
    # worker threads or DataLoader workers; embed_preprocessed() runs the model on its output.

    def preprocess_images(self, images: Sequence[Image.Image]) -> dict:
        """Model inputs for a batch of RGB images (a dict holding 'pixel_values')."""
        return self.model.preprocess(list(images))

    def embed_preprocessed(self, features: dict) -> np.ndarray:
        """Run the model on preprocess_images() output: float32 [n, dim], unit length.

        fp32 pixel values are fine at any precision: CLIP casts them to its patch embedding's dtype.
        """
        import torch

        features = {k: (v.to(self.device) if hasattr(v, "to") else v) for k, v in features.items()}
        with torch.inference_mode():
            out = self.model.forward(features)["sentence_embedding"]
            out = torch.nn.functional.normalize(out.float(), dim=-1)
        return np.ascontiguousarray(out.cpu().numpy(), dtype=np.float32)


def _unit_rows(vecs: np.ndarray) -> np.ndarray:
    """Normalised here in float32: sentence-transformers normalises in the model's dtype, which
    leaves bf16 vectors up to 0.2% off unit length."""
    vecs = np.asarray(vecs, dtype=np.float32)
    norms = np.linalg.norm(vecs, axis=1, keepdims=True)
    return np.ascontiguousarray(vecs / np.maximum(norms, 1e-12))


def _apply_precision(model: object, image_precision: str, text_precision: str) -> None:
    """Convert the loaded model in place: each CLIP tower to its own precision.

    Models without CLIP's two towers (any other sentence-transformers model) are converted
    whole, which needs one precision for both.
    """
    if image_precision == text_precision == "fp32":
        return
    hf = _hf_model(model)
    if hf is not None and all(hasattr(hf, p) for p in _IMAGE_PARTS + _TEXT_PARTS):
        _convert(hf, _IMAGE_PARTS, image_precision)
        _convert(hf, _TEXT_PARTS, text_precision)
    elif image_precision == text_precision:
        _convert_module(model, image_precision)
    else:
        raise BuildError("This model is not a two-tower CLIP: give one precision for text and images.")


def _hf_model(model: object) -> object | None:
    """The transformers model inside a sentence-transformers CLIP (its first module)."""
    try:
        first = model[0]  # type: ignore[index]
    except (TypeError, IndexError, KeyError):
        return None
    hf = getattr(first, "model", None)
    return hf if hf is not None else getattr(first, "auto_model", None)


def _convert(hf: object, parts: Sequence[str], precision: str) -> None:
    import torch

    if precision == "fp32":
        return
    if precision == "int8":
        # Only the Linear layers (~all of ViT's FLOPs) are quantised, named one by one: naming a
        # tower would also try to quantise its token embedding.
        linears = {name for name, mod in hf.named_modules()
                   if isinstance(mod, torch.nn.Linear) and name.split(".")[0] in parts}
        _quantize_int8(hf, linears)
        return
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    for part in parts:
        getattr(hf, part).to(dtype)


def _quantize_int8(module: object, targets: set) -> None:
    """Dynamic int8 quantisation of `targets` (layer names or types), in place.

    torch.ao.quantization warns that it moves to torchao: silenced, since it still works in torch
    2.13 and torchao is not a dependency.
    """
    import torch
    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantize_dynamic(module, targets, dtype=torch.qint8, inplace=True)


def _convert_module(module: object, precision: str) -> None:
    import torch

    if precision == "int8":
        _quantize_int8(module, {torch.nn.Linear})
    elif precision in ("bf16", "fp16"):
        module.to({"bf16": torch.bfloat16, "fp16": torch.float16}[precision])  # type: ignore[attr-defined]


# --- Fidelity: is a cheaper precision still the same search? ----------------------------------

@dataclass(frozen=True)
class Fidelity:
    """How far a precision's embeddings are from fp32's, for the same inputs in the same order."""

    mean_cosine: float        # mean over rows of cos(reference row, candidate row)
    min_cosine: float
    top_k_overlap: float      # mean share of each row's k nearest other rows found by both
    k: int

    @property
    def passes(self) -> bool:
        return self.mean_cosine >= FIDELITY_MIN_COSINE and self.top_k_overlap >= FIDELITY_MIN_OVERLAP


def compare_embeddings(reference: np.ndarray, candidate: np.ndarray, k: int = 10) -> Fidelity:
    """Compare unit vectors of the same rows: per-row cosine, and whether each row's k nearest
    neighbours (itself excluded: it is always first) stay the same.

    The overlap is what a user notices: the same query returning a different top k.
    """
    reference = np.asarray(reference, dtype=np.float32)
    candidate = np.asarray(candidate, dtype=np.float32)
    if reference.shape != candidate.shape or reference.ndim != 2 or len(reference) < 2:
        raise ValueError(f"need two [n >= 2, dim] arrays of one shape, got {reference.shape} and {candidate.shape}")
    cos = np.einsum("ij,ij->i", reference, candidate)
    k = min(k, len(reference) - 1)
    overlap = float(np.mean([len(a & b) / k for a, b in zip(_neighbours(reference, k), _neighbours(candidate, k))]))
    return Fidelity(mean_cosine=float(cos.mean()), min_cosine=float(cos.min()), top_k_overlap=overlap, k=k)


def _neighbours(vectors: np.ndarray, k: int) -> list[set[int]]:
    scores = vectors @ vectors.T
    np.fill_diagonal(scores, -np.inf)
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    return [set(row.tolist()) for row in top]
