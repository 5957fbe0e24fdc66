"""Each distinct model loaded once, shared by every collection embedded with it.

A ViT-B/32 costs ~1.2 GiB of memory and seconds to load (BENCHMARKS.md, Memory); a collection's
index is memory-mapped and costs what its pages touch. So several collections of one model cost
one model plus their indexes. The moderation policy is kept per model too: its concept vectors
are embedded by the model they are compared with (design.md: never a second model), and the term
list is the same for every collection.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from search_core.moderation import ModerationPolicy

log = logging.getLogger(__name__)


class SharedModels:
    """Models by the name a collection's manifest gives (or `override`, IMAGESEARCH_MODEL).

    Two spellings of one model (a Hub name and a local folder) are two entries: the name is the
    key. Thread-safe: a rebuilt collection is opened in a thread of its own (bot/watch.py).
    """

    def __init__(self, load_encoder: Callable[[str], Any],
                 load_policy: Callable[[Any], ModerationPolicy | None] = lambda encoder: None,
                 *, override: str | None = None) -> None:
        self._load_encoder = load_encoder
        self._load_policy = load_policy
        self.override = override
        self._loaded: dict[str, tuple[Any, ModerationPolicy | None]] = {}
        self._lock = threading.Lock()

    def get(self, model: str) -> tuple[Any, ModerationPolicy | None]:
        """(encoder, moderation policy) for a collection embedded with `model`, loading it the first time."""
        name = self.override or model
        with self._lock:
            if name not in self._loaded:
                encoder = self._load_encoder(name)
                self._loaded[name] = (encoder, self._load_policy(encoder))
                log.info("model %s loaded (%d model(s) in memory)", name, len(self._loaded))
            return self._loaded[name]

    @property
    def names(self) -> list[str]:
        """The models loaded so far, in load order."""
        with self._lock:
            return list(self._loaded)
