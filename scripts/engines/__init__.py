"""Build engines: who runs the embed stage. Siblings behind one small interface.

The build (scripts/build.py) scans the source, plans what to embed (scripts/incremental.py) and
hands an engine an `EmbedJob`: the source, the source rows to embed, and a work folder. The engine
writes shard files there (scripts/shards.py: the format, the key in state.json, whole-or-nothing
files) and returns an `EmbedReport`. Everything after (gather, index, group, write) reads only
those files, so every engine yields the same collection. ``local`` (scripts/engines/local.py)
embeds in this process: Pillow decoding in threads on a CPU, nvJPEG on CUDA. ``ray``
(scripts/ray_engine) embeds on a Ray cluster's workers and writes the same shards.

Around `embed` an engine may also say how the source is opened, where the driver's own model (used
for text probes) runs, and on what the image vectors are computed; the defaults here are the local
engine's (everything in this process), and the build holds `session()` open from model loading to
the end of the embed stage.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from search_core.errors import BuildError

if TYPE_CHECKING:
    from scripts.ray_engine.options import RayOptions
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

    def open_source(self, source: str, *, embeddings_column: str | None = None) -> Source:
        """The source's rows as the build reads them (scripts/sources.py)."""
        from scripts.sources import open_source

        return open_source(source, embeddings_column=embeddings_column)

    @contextmanager
    def session(self) -> Iterator[None]:
        """Whatever the engine holds while the build loads the model and embeds (nothing here)."""
        yield

    def driver_precision(self, precision: str) -> str:
        """The precision the driver loads its model at, for `precision` asked of the image vectors."""
        return precision

    def resolve(self, encoder: Encoder, precision: str) -> tuple[str, str]:
        """(device, precision) the image vectors are computed on and at: here, the driver's model's."""
        return encoder.device, encoder.precision


ENGINES = ("local", "ray")


def get_engine(name: str, *, ray: RayOptions | None = None) -> EmbedEngine:
    """The engine called `name`; `ray`: the Ray engine's options (its defaults when None). The Ray
    engine checks here, before any work, that Ray is installed and the cluster answers."""
    if name == "local":
        from scripts.engines.local import LocalEngine

        return LocalEngine()
    if name == "ray":
        from scripts.ray_engine.engine import RayEngine

        return RayEngine(ray)
    raise BuildError(f"Unknown build engine {name!r}; choose one of: {', '.join(ENGINES)}.")
