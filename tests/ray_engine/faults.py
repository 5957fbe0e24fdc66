"""Workers that fail on purpose, for the fault tests. Ray's worker processes import this module.

Each fault happens once per marker file, whichever worker meets it first: the marker is made
before failing, so the batch Ray runs again (on the restarted worker, or another) goes through.
"""

from __future__ import annotations

import os
from pathlib import Path

from scripts.ray_engine.worker import Embedder


class DyingEmbedder(Embedder):
    """The first batch kills its worker's process outright; the next one raises an OSError."""

    fault_folder = ""        # set by `dying_embedder` on a subclass, which travels to the workers

    def __call__(self, batch):
        folder = Path(self.fault_folder)
        if _first(folder / "killed"):
            os._exit(1)
        if _first(folder / "raised"):
            raise OSError("simulated failure writing a part")
        return super().__call__(batch)


def dying_embedder(markers: Path) -> type:
    """A DyingEmbedder whose markers live in `markers` (pickled by value, so the workers see it)."""
    return type("DyingEmbedder", (DyingEmbedder,), {"fault_folder": str(markers)})


def _first(marker: Path) -> bool:
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    os.close(fd)
    return True
