"""The local engine: embed a job's missing shards in this process, with the driver's model.

Batches of undecoded images are fetched from the source's Arrow data a batch at a time (never the
whole column) and go through the one stream the build chooses (`scripts.gpu.select_embed_stream`:
nvJPEG on CUDA where torchvision allows, else Pillow in threads, scripts/embedding.py). A shard is
written as soon as its last batch is embedded, so a crash costs at most one shard per stream.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from scripts.engines import EmbedEngine, EmbedJob, EmbedReport
from scripts.gpu import select_embed_stream
from scripts.progress import stage
from scripts.shards import missing_shards, open_work, shard_path, shard_slice, write_shard
from search_core.encoder import Encoder

log = logging.getLogger(__name__)


class LocalEngine(EmbedEngine):
    name = "local"

    def embed(self, job: EmbedJob, *, encoder: Encoder, live: bool) -> EmbedReport:
        started = time.perf_counter()
        n = len(job.rows)
        open_work(job.work, job.key, rows=n, shard_size=job.shard_size)
        todo = missing_shards(job.work, n, job.shard_size)
        resumed = n - sum(len(range(n)[shard_slice(s, n, job.shard_size)]) for s in todo)
        if resumed:
            log.info("resuming: %d of %d images already embedded in %s", resumed, n, job.work)
        src = job.source
        images = src.dataset.select_columns([src.image_column]).with_format(None)

        def batches() -> Iterator[tuple[list[int], Any]]:
            for s in todo:
                part = shard_slice(s, n, job.shard_size)
                for start in range(part.start, part.stop, job.batch_size):
                    indices = list(range(start, min(part.stop, start + job.batch_size)))
                    rows = job.rows[indices].tolist()
                    yield indices, (lambda rows=rows: images[rows][src.image_column])

        workers = 1 if encoder.device == "cpu" else min(16, os.cpu_count() or 1)
        embedded = 0
        current: dict[int, list] = {}
        stream = select_embed_stream(encoder)
        with stage("embed", "image", live=live, total=n, initial=resumed) as embedding:
            if resumed:
                embedding.note = f"{resumed:,} resumed"
            for batch in stream(encoder, batches(), workers=workers):
                done = batch.positions + [i for i, _ in batch.skipped]
                shard = min(done) // job.shard_size
                current.setdefault(shard, []).append(batch)
                embedded += len(batch.positions)
                embedding.advance(len(done))
                if max(done) == shard_slice(shard, n, job.shard_size).stop - 1:
                    self._write(job, shard, current.pop(shard), encoder.dim)
        return EmbedReport(embedded=embedded, resumed=resumed, seconds=time.perf_counter() - started)

    @staticmethod
    def _write(job: EmbedJob, shard: int, batches: list, dim: int) -> None:
        """The shard's batches as one file, indices turned back into source rows."""
        indices = np.asarray([i for b in batches for i in b.positions], dtype=np.int64)
        vectors = [b.vectors for b in batches if len(b.positions)]
        skipped = [(int(job.rows[i]), reason) for b in batches for i, reason in b.skipped]
        write_shard(shard_path(job.work, shard), job.rows[indices], np.concatenate(vectors) if vectors else
                    np.zeros((0, dim), np.float32), skipped, dim)
