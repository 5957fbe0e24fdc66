"""The parts the Ray workers write to the work folder (`--work-dir`), and what the driver reads back.

A part is one actor call's output: the keys of the source rows it embedded, their vectors, and
the keys it skipped with the reason (a shard's fields, with source keys in place of rows: Ray
Data hands batches to whichever worker is free, in no fixed order, so a part is not a shard). A
part is named after a hash of its keys, so a batch Ray runs again after its part was written
(its worker died before reporting) rewrites the same file rather than adding a second one.

The folder is a local path or an fsspec URL (``s3://``, ``gs://``): on a cluster every worker
must reach it. ``state.json`` holds the key of the build the parts belong to; any other key
starts the folder afresh, as the local engine does with its shards.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from search_core.errors import BuildError

log = logging.getLogger(__name__)

STATE = "state.json"


@dataclass(frozen=True)
class Part:
    """One part file's contents."""

    keys: np.ndarray                 # uint64 source keys embedded
    vectors: np.ndarray              # float32 [len(keys), dim]
    skipped_keys: np.ndarray         # uint64 source keys not embedded
    skipped_reasons: list[str]       # why, one per skipped key

    def __len__(self) -> int:
        return len(self.keys) + len(self.skipped_keys)


class PartsFolder:
    """The parts of one build under a local folder or an object-storage prefix."""

    def __init__(self, url: str) -> None:
        import fsspec

        self.url = str(url).rstrip("/")
        self.fs, self.root = fsspec.core.url_to_fs(self.url)
        protocol = self.fs.protocol
        self.local = "file" in ((protocol,) if isinstance(protocol, str) else tuple(protocol))

    # --- the driver -------------------------------------------------------------------------------

    def claim(self, key: str) -> bool:
        """Make the folder hold only parts of `key`; True when parts of it from an earlier run are kept."""
        state = f"{self.root}/{STATE}"
        try:
            same = json.loads(self.fs.cat_file(state))["key"] == key
        except (OSError, ValueError, KeyError, TypeError):
            same = False
        if same:
            return True
        if self.fs.exists(self.root):
            if not self.fs.exists(state) and self.fs.ls(self.root, detail=False):
                raise BuildError(f"The work folder {self.url} holds files that are not this build's parts; "
                                 "choose another --work-dir (it is emptied when a build starts afresh).")
            log.info("discarding the parts in %s: another source, model or precision wrote them", self.url)
            self.fs.rm(self.root, recursive=True)
        try:
            self.fs.makedirs(self.root, exist_ok=True)
            self._put(state, json.dumps({"key": key}).encode())
        except OSError as exc:
            raise BuildError(f"Cannot write to the work folder {self.url}: {exc.strerror or exc}. "
                             "Choose another --work-dir.") from exc
        return False

    def paths(self) -> list[str]:
        """Finished parts (one being written has a temporary name and is not listed)."""
        if not self.fs.exists(self.root):
            return []
        return sorted(p for p in self.fs.ls(self.root, detail=False)
                      if p.rsplit("/", 1)[-1].startswith("part-") and p.endswith(".npz"))

    def read(self, path: str, *, vectors: bool = True) -> Part:
        """A part's arrays; with vectors=False its vectors are not read (npz members load on demand)."""
        with self.fs.open(path, "rb") as f, np.load(f) as data:
            return Part(keys=data["keys"].astype(np.uint64),
                        vectors=data["vectors"] if vectors else np.zeros((0, 0), np.float32),
                        skipped_keys=data["skipped_keys"].astype(np.uint64),
                        skipped_reasons=[str(r) for r in data["skipped_reasons"].tolist()])

    def parts(self, *, vectors: bool = True) -> Iterator[tuple[str, Part]]:
        for path in self.paths():
            yield path, self.read(path, vectors=vectors)

    def remove(self) -> None:
        try:
            self.fs.rm(self.root, recursive=True)
        except FileNotFoundError:
            pass

    # --- the workers ------------------------------------------------------------------------------

    def check_writable(self) -> None:
        """Each worker calls this as it starts: one that cannot write its parts fails there (Ray Data
        does not retry a failed start) rather than retrying every batch."""
        probe = f"{self.root}/.probe-{uuid.uuid4().hex}"
        try:
            self._put(probe, b"")
            self.fs.rm(probe)
        except OSError as exc:
            raise BuildError(f"A worker cannot write to the work folder {self.url}: {exc.strerror or exc}. On a "
                             "cluster --work-dir must be storage every node reaches.") from exc

    def write(self, part: Part) -> str:
        keys = np.asarray(part.keys, dtype=np.uint64)
        skipped = np.asarray(part.skipped_keys, dtype=np.uint64)
        digest = hashlib.blake2b(keys.tobytes() + b"|" + skipped.tobytes(), digest_size=16).hexdigest()
        buffer = io.BytesIO()
        np.savez(buffer, keys=keys, vectors=np.asarray(part.vectors, dtype=np.float32), skipped_keys=skipped,
                 skipped_reasons=np.array(list(part.skipped_reasons), dtype=np.str_))
        path = f"{self.root}/part-{digest}.npz"
        self._put(path, buffer.getvalue())
        return path

    # --- storage ----------------------------------------------------------------------------------

    def _put(self, path: str, data: bytes) -> None:
        """Whole or not at all: a local file is written aside, synced and renamed; an object-store
        PUT is atomic already."""
        if not self.local:
            self.fs.pipe_file(path, data)
            return
        tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)


class KeyLookup:
    """Source key -> index in a key array (-1 for a key it lacks), for a batch of keys at once."""

    def __init__(self, keys: np.ndarray) -> None:
        keys = np.asarray(keys, dtype=np.uint64)
        self._sorter = np.argsort(keys, kind="stable")
        self._sorted = keys[self._sorter]

    def __call__(self, keys: np.ndarray) -> np.ndarray:
        keys = np.asarray(keys, dtype=np.uint64)
        if len(self._sorted) == 0 or len(keys) == 0:
            return np.full(len(keys), -1, dtype=np.int64)
        at = np.minimum(np.searchsorted(self._sorted, keys), len(self._sorted) - 1)
        return np.where(self._sorted[at] == keys, self._sorter[at], -1).astype(np.int64)
