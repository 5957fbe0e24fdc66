"""Build engines: who runs the embed stage. Siblings behind one small interface.

The build (scripts/build.py) scans the source, plans what to embed (scripts/incremental.py) and
hands an engine an `EmbedJob`: the source, the source rows to embed, and a work folder. The engine
writes shard files there (scripts/shards.py: the format, the key in state.json, whole-or-nothing
files) and returns an `EmbedReport`. Everything after (gather, index, group, write) reads only
those files, so every engine yields the same collection. ``local`` (scripts/engines/local.py)
embeds in this process: Pillow decoding in threads on a CPU, nvJPEG on CUDA. Another engine (a
cluster of workers) implements the same `embed` and writes the same shards.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from search_core.errors import BuildError

if TYPE_CHECKING:
    from scripts.sources import Source
    from search_core.encoder import Encoder


@dataclass(frozen=True)
class EmbedJob:
    """What to embed, with which model, and where the shards go."""

    source: Source
    rows: np.ndarray           # int64 source rows to embed; shard s holds rows[s*shard_size:(s+1)*shard_size]
    work: Path                 # the work folder (shards + state.json)
    key: str                   # hash of everything that decides the vectors: shards of another key are discarded
    shard_size: int
    model: str                 # name or folder, as the manifest records it
    device: str                # resolved: "cpu", "cuda", "cuda:1"
    precision: str             # resolved: fp32, bf16, fp16, int8
    batch_size: int


@dataclass(frozen=True)
class EmbedReport:
    embedded: int              # images embedded by this run
    resumed: int               # job rows already in shards from an interrupted run
    seconds: float             # wall clock of the embed stage


class EmbedEngine(Protocol):
    name: str

    def embed(self, job: EmbedJob, *, encoder: Encoder, live: bool) -> EmbedReport:
        """Write every missing shard of `job` into job.work. `encoder` is the driver's loaded model
        (an engine with its own workers may load the same model there instead)."""


ENGINES = ("local",)


def get_engine(name: str) -> EmbedEngine:
    if name == "local":
        from scripts.engines.local import LocalEngine

        return LocalEngine()
    raise BuildError(f"Unknown build engine {name!r}; choose one of: {', '.join(ENGINES)}.")
