"""The embedding worker: a Ray actor that loads the model once and writes one part per batch."""

from __future__ import annotations

import logging
import os

import numpy as np

from scripts.ray_engine.decoding import FINISH, device_finish
from scripts.ray_engine.parts import Part, PartsFolder

log = logging.getLogger(__name__)


class Embedder:
    """Holds one Encoder (fp16 on a GPU, the CPU precision rules otherwise, as `Encoder.load`
    resolves them) for all the batches Ray Data hands this actor.

    Each call embeds the batch's usable crops in model batches of `batch_size`, writes them with
    the batch's skipped keys as one part, and returns one row of counts for the driver's progress.
    """

    def __init__(self, *, model: str, device: str, precision: str, threads: int, batch_size: int,
                 work_dir: str) -> None:
        import torch

        from search_core.encoder import Encoder, quiet_model_loading

        if device == "cpu":
            torch.set_num_threads(threads)
        quiet_model_loading()
        self.parts = PartsFolder(work_dir)
        self.parts.check_writable()
        self.encoder = Encoder.load(model, device=device, precision=precision)
        self.module = self.encoder.model[0]
        self.on_device = device_finish(self.encoder) if device.startswith("cuda") else None
        self.batch_size = batch_size
        self.worker_id = _actor_id()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        keys = np.asarray(batch["key"], dtype=np.uint64)
        reasons = np.asarray(batch["reason"], dtype=object)
        good = reasons == ""
        pixels = batch["pixels"][good]
        chunks = [self.embed(pixels[i:i + self.batch_size]) for i in range(0, len(pixels), self.batch_size)]
        vectors = np.concatenate(chunks) if chunks else np.zeros((0, 0), dtype=np.float32)
        path = self.parts.write(Part(keys=keys[good], vectors=vectors, skipped_keys=keys[~good],
                                     skipped_reasons=[str(r) for r in reasons[~good]]))
        return {"part": np.array([path]), "rows": np.array([len(keys)]), "worker": np.array([self.worker_id])}

    def embed(self, crops: np.ndarray) -> np.ndarray:
        """float32 [n, dim], unit length, from uint8 crops: rescaled and normalised (on the GPU, else
        by the processor itself), then the model (Encoder.embed_preprocessed, as the local engine)."""
        if self.on_device is not None:
            features = self.on_device(crops)
        else:
            features = self.module.preprocess(list(crops), processing_kwargs=FINISH)
        return self.encoder.embed_preprocessed(features)

    def __repr__(self) -> str:      # Ray names the actor's log lines with it
        return f"Embedder({self.encoder.model_name} on {self.encoder.device}, {self.encoder.precision})"


def _actor_id() -> str:
    """This actor's id (kept across Ray's restarts of it), or the process id outside an actor."""
    try:
        import ray

        return ray.get_runtime_context().get_actor_id() or str(os.getpid())
    except Exception:  # noqa: BLE001 - outside Ray (a test calling the worker directly)
        return str(os.getpid())
