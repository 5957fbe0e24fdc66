"""Each distinct model loaded once, shared by every collection embedded with it.

A ViT-B/32 costs ~1.2 GiB of memory and seconds to load (BENCHMARKS.md, Memory); a collection's
index is memory-mapped and costs what its pages touch. So several collections of one model cost
one model plus their indexes. The moderation policy is kept per model too: its concept vectors
are embedded by the model they are compared with (design.md: never a second model), and the term
list is the same for every collection.

The text model for prompts (IMAGESEARCH_TEXT_MODEL) is loaded once as well, and used for the
collections of each image model it is aligned with (`TextModel.check_aligned`, measured once per
image model). Collections of an image model it is not aligned with keep that model's own text
encoder, with a warning: a bot serving a clip-ViT-B-32 collection and another CLIP's collection
can use clip-ViT-B-32-multilingual-v1 for the first without breaking the second.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from search_core.errors import TextModelMismatchError

if TYPE_CHECKING:
    from search_core.moderation import ModerationPolicy
    from search_core.text_model import TextModel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelSet:
    """What the collections of one image model share."""

    encoder: Any                          # search_core.encoder.Encoder
    policy: ModerationPolicy | None       # its concept vectors embedded by `encoder`
    text_model: TextModel | None = None   # for prompts, when aligned with `encoder`


class SharedModels:
    """Models by the name a collection's manifest gives (or `override`, IMAGESEARCH_MODEL).

    Two spellings of one model (a Hub name and a local folder) are two entries: the name is the
    key. Thread-safe: a rebuilt collection is opened in a thread of its own (bot/watch.py).
    """

    def __init__(self, load_encoder: Callable[[str], Any],
                 load_policy: Callable[[Any], ModerationPolicy | None] = lambda encoder: None,
                 *, override: str | None = None, load_text_model: Callable[[], TextModel] | None = None) -> None:
        self._load_encoder = load_encoder
        self._load_policy = load_policy
        self._load_text_model = load_text_model
        self.override = override
        self._loaded: dict[str, ModelSet] = {}
        self._text_model: TextModel | None = None
        # Image model -> why the text model was not used for it (TextModelMismatchError's message).
        self.text_refusals: dict[str, str] = {}
        self._lock = threading.Lock()

    def get(self, model: str) -> ModelSet:
        """The models for a collection embedded with `model`, loading them the first time.

        Raises what loading raises; a text model that cannot be loaded at all raises
        TextModelMismatchError, one that is not aligned with this model is left out (text_refusals).
        """
        name = self.override or model
        with self._lock:
            if name not in self._loaded:
                encoder = self._load_encoder(name)
                self._loaded[name] = ModelSet(encoder, self._load_policy(encoder), self._aligned_text_model(encoder))
                log.info("model %s loaded (%d model(s) in memory)", name, len(self._loaded))
            return self._loaded[name]

    def _aligned_text_model(self, encoder: Any) -> TextModel | None:
        if self._load_text_model is None:
            return None
        if self._text_model is None:
            self._text_model = self._load_text_model()
        try:
            self._text_model.check_aligned(encoder)
        except TextModelMismatchError as exc:
            name = getattr(encoder, "model_name", "?")
            self.text_refusals[name] = str(exc)
            log.warning("IMAGESEARCH_TEXT_MODEL is not used for collections of %s: %s", name, exc)
            return None
        return self._text_model

    @property
    def names(self) -> list[str]:
        """The models loaded so far, in load order."""
        with self._lock:
            return list(self._loaded)
