"""The moderation policy: the bot asks it before every search.

The command line (``search_core.cli``) does not: it is an operator's tool on their own collection.

Two kinds of rule, each read from a plain text file (one entry a line, ``#`` comments):

- blocked *terms*: words and phrases refused however they are spelled (``search_core.normalise``
  undoes case, accents, look-alike letters, leetspeak, spacing and punctuation tricks, and
  matches regular English inflections). ``kill*`` blocks every word starting with ``kill`` (as
  Discord AutoMod reads ``*``); ``"kill"`` in double quotes blocks the word alone, without
  inflections. Cheap: a regular expression, no model.
- blocked *concepts*: phrases refused by meaning. Each is embedded once, at load, with the
  collection's own CLIP (design.md: never a second model); a query is refused when its CLIP
  vector (text prompt or attached image) is close enough to one of them. A line may name a
  category for reports and the audit log, ``violence: a burning ship`` (one word, then a colon);
  a refusal carries that category (`Decision.concept_category`), never the phrase.

A refusal says why in general terms only. It never repeats the prompt or the entry it matched,
because the message may be shown where others can read it, and because telling someone which
spelling tripped the list teaches them the next one to try.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from search_core import listfile
from search_core.errors import ImageSearchError, ModelMismatchError, QueryError
from search_core.normalise import Entry, TermMatcher

if TYPE_CHECKING:
    from search_core.encoder import Encoder

log = logging.getLogger(__name__)

# Defaults for the real clip-ViT-B-32 (cosine on L2-normalised vectors). CLIP text embeddings sit
# in a narrow cone: even unrelated prompts score 0.6 or more against each other (openai/CLIP#148),
# related ones 0.8-0.9, while image-text scores are much lower: a matching pair lands near
# 0.25-0.35 and an unrelated one near 0.15-0.2 (openai/CLIP#405; Chinese-CLIP's maintainers
# suggest 0.3 as a cut, OFA-Sys/Chinese-CLIP#89). Hence one threshold per kind of query. These
# refuse close paraphrases and clear depictions only; tune them on your own concept list.
DEFAULT_TEXT_THRESHOLD = 0.85
DEFAULT_IMAGE_THRESHOLD = 0.28

BLOCKED_TERM = "blocked_term"
BLOCKED_CONCEPT = "blocked_concept"

TERM_MESSAGE = "This search was refused: the prompt contains a word or phrase that is not allowed here."
TEXT_CONCEPT_MESSAGE = "This search was refused: the prompt is about a subject that is not allowed here."
IMAGE_CONCEPT_MESSAGE = "This search was refused: the image shows a subject that is not allowed here."

# A concept line's category: one word (letters, digits, - and _) and a colon before the phrase, so
# a phrase that merely contains a colon ("a map: london") is not split.
_CATEGORY = re.compile(r"([^\W\d_][\w-]{0,39})\s*:\s*(\S.*)")
DEFAULT_CONCEPT_CATEGORY = "uncategorised"
# Rows of a batch scored at once by flag_vectors: [chunk, concepts] float32 stays a few MB.
FLAG_CHUNK = 8192


class ModerationConfigError(ImageSearchError):
    """A moderation list cannot be read or used. Names the file, never its content."""


@dataclass(frozen=True)
class Decision:
    """The policy's answer. ``message`` is safe to show to the person who asked (empty if allowed)."""

    allowed: bool
    category: str | None = None     # BLOCKED_TERM, BLOCKED_CONCEPT, or None when allowed
    message: str = ""
    concept_category: str | None = None   # for BLOCKED_CONCEPT: the concept's category, never its phrase


@dataclass(frozen=True)
class ConceptFlag:
    """One vector of a batch that the concept filter would refuse (`ModerationPolicy.flag_vectors`)."""

    index: int          # position in the batch given
    category: str       # the closest concept's category, never its phrase
    score: float        # cosine with that concept


ALLOWED = Decision(allowed=True)


def read_list(path: Path) -> list[str]:
    """Entries of a moderation list file (see search_core.listfile for the format)."""
    return listfile.read_list(path, what="Moderation list", error=ModerationConfigError)


def parse_concept(line: str) -> tuple[str, str]:
    """``"violence: a burning ship"`` -> ("violence", "a burning ship"); a line without a
    category gets DEFAULT_CONCEPT_CATEGORY. Categories are lower-cased, so lists may mix cases."""
    line = line.strip()
    match = _CATEGORY.fullmatch(line)
    if match is None:
        return DEFAULT_CONCEPT_CATEGORY, line
    return match.group(1).lower(), match.group(2).strip()


class ModerationPolicy:
    """Blocked terms and concepts, loaded once per process and asked before every search.

    Thread-safe to share: nothing changes after construction.
    """

    def __init__(self, terms: Sequence[str] = (), concept_vectors: np.ndarray | None = None, *,
                 concept_categories: Sequence[str] | None = None,
                 text_threshold: float = DEFAULT_TEXT_THRESHOLD,
                 image_threshold: float = DEFAULT_IMAGE_THRESHOLD):
        """``concept_vectors``: float [n, dim], one row per concept phrase, from the collection's model;
        ``concept_categories``: one per row (default: all DEFAULT_CONCEPT_CATEGORY)."""
        try:
            self._terms = TermMatcher(list(terms))
        except ValueError as exc:
            raise ModerationConfigError(f"Blocked term {exc}.") from None
        if len(self._terms) < len(terms):
            log.warning("%d moderation term(s) have no letters or digits and are ignored",
                        len(terms) - len(self._terms))
        if concept_vectors is None or len(concept_vectors) == 0:
            self._concepts: np.ndarray | None = None
            self._categories: list[str] = []
        else:
            vecs = np.atleast_2d(np.asarray(concept_vectors, dtype=np.float32))
            norms = np.linalg.norm(vecs, axis=1, keepdims=True)
            self._concepts = vecs / np.maximum(norms, 1e-12)
            self._categories = (list(concept_categories) if concept_categories is not None
                                else [DEFAULT_CONCEPT_CATEGORY] * len(vecs))
            if len(self._categories) != len(vecs):
                raise ModerationConfigError(f"{len(vecs)} concept vectors but {len(self._categories)} categories.")
        for name, value in (("text", text_threshold), ("image", image_threshold)):
            if not -1.0 <= float(value) <= 1.0:
                raise ModerationConfigError(f"The {name} concept threshold is a cosine: between -1 and 1, "
                                            f"not {value}.")
        self.text_threshold = float(text_threshold)
        self.image_threshold = float(image_threshold)

    @classmethod
    def from_phrases(cls, terms: Sequence[str] = (), concepts: Sequence[str] = (),
                     encoder: Encoder | None = None, **thresholds: float) -> ModerationPolicy:
        """Embed the concept phrases with ``encoder`` (once) and build the policy.

        A phrase may start with its category (``violence: a burning ship``); only the phrase is embedded.
        """
        vectors, categories = None, None
        if concepts:
            if encoder is None:
                raise ModerationConfigError(
                    "Blocked concepts need the collection's model to embed them; none was given.")
            categories, phrases = zip(*(parse_concept(c) for c in concepts))
            vectors = encoder.encode_text(list(phrases))
        return cls(terms, vectors, concept_categories=categories, **thresholds)

    @classmethod
    def from_files(cls, blocklist: Path | None, concepts: Path | None, encoder: Encoder | None, *,
                   text_threshold: float = DEFAULT_TEXT_THRESHOLD,
                   image_threshold: float = DEFAULT_IMAGE_THRESHOLD) -> ModerationPolicy:
        """Load the term list and the concept list (either may be None: that rule is off)."""
        terms = read_list(blocklist) if blocklist is not None else []
        phrases = read_list(concepts) if concepts is not None else []
        if phrases and encoder is None:
            raise ModerationConfigError(
                f"Blocked concepts in {concepts} need the collection's model to embed them; none was given.")
        for number, term in enumerate(terms, start=1):
            try:
                Entry.parse(term)
            except ValueError as exc:   # say where, never what: the entry is a blocked word
                raise ModerationConfigError(f"Moderation list {blocklist}, entry {number}: {exc}.") from None
        policy = cls.from_phrases(terms, phrases, encoder, text_threshold=text_threshold,
                                  image_threshold=image_threshold)
        log.info("moderation: %d blocked term(s), %d blocked concept(s)", len(policy._terms), len(phrases))
        return policy

    @property
    def has_concepts(self) -> bool:
        """Whether check_vector can refuse anything; when not, callers may skip passing vectors."""
        return self._concepts is not None

    @property
    def concept_categories(self) -> list[str]:
        """The categories of the blocked concepts, each once, in list order."""
        return list(dict.fromkeys(self._categories))

    def check_text(self, prompt: str) -> Decision:
        """Blocked terms in the prompt, however spelled. No model: safe to call before deferring."""
        rule = self._terms.find(prompt)
        if rule is None:
            return ALLOWED
        log.info("moderation: prompt refused by blocked term #%d", rule + 1)
        return Decision(False, BLOCKED_TERM, TERM_MESSAGE)

    def check_vector(self, vector: np.ndarray, *, kind: Literal["text", "image"]) -> Decision:
        """Blocked concepts by meaning: the query's CLIP vector against each concept phrase's.

        ``kind`` picks the threshold: text-text cosines run far higher than image-text ones.
        """
        threshold, message = self._threshold(kind)
        if self._concepts is None:
            return ALLOWED
        vec = np.asarray(vector, dtype=np.float32).reshape(-1)
        self._check_dim(vec.shape[0])
        norm = float(np.linalg.norm(vec))
        if norm == 0.0 or not np.isfinite(norm):
            # Fail closed: a broken vector cannot be shown to be harmless.
            raise QueryError("The query could not be checked: its embedding is empty or invalid.")
        scores = self._concepts @ (vec / norm)
        best = int(np.argmax(scores))
        if scores[best] < threshold:
            return ALLOWED
        category = self._categories[best]
        log.info("moderation: %s query refused by blocked concept #%d, category %s (cosine %.3f >= %.3f)",
                 kind, best + 1, category, scores[best], threshold)
        return Decision(False, BLOCKED_CONCEPT, message, concept_category=category)

    def flag_vectors(self, vectors: np.ndarray, *, kind: Literal["text", "image"] = "image") -> list[ConceptFlag]:
        """Which of a batch of vectors (e.g. a collection's image embeddings) the concept filter
        would refuse as a ``kind`` query, with the closest concept's category; for review reports.

        Scored in chunks of FLAG_CHUNK rows, so a memory-mapped million-row array is never copied
        whole. A zero or non-finite row cannot be scored and is not flagged.
        """
        threshold, _ = self._threshold(kind)
        vectors = np.asarray(vectors) if not isinstance(vectors, np.ndarray) else vectors
        if vectors.ndim != 2:
            raise ValueError(f"vectors must be [n, dim], not shape {vectors.shape}")
        if self._concepts is None or len(vectors) == 0:
            return []
        self._check_dim(vectors.shape[1])
        flags = []
        for start in range(0, len(vectors), FLAG_CHUNK):
            chunk = np.asarray(vectors[start:start + FLAG_CHUNK], dtype=np.float32)
            norms = np.linalg.norm(chunk, axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                scores = (chunk @ self._concepts.T) / norms[:, None]
            scores[~(np.isfinite(norms) & (norms > 0))] = -np.inf
            best = np.argmax(scores, axis=1)
            best_scores = scores[np.arange(len(chunk)), best]
            for i in np.flatnonzero(best_scores >= threshold):
                flags.append(ConceptFlag(start + int(i), self._categories[int(best[i])], float(best_scores[i])))
        return flags

    def _threshold(self, kind: str) -> tuple[float, str]:
        if kind == "text":
            return self.text_threshold, TEXT_CONCEPT_MESSAGE
        if kind == "image":
            return self.image_threshold, IMAGE_CONCEPT_MESSAGE
        raise ValueError(f"kind must be 'text' or 'image', not {kind!r}")

    def _check_dim(self, dim: int) -> None:
        if dim != self._concepts.shape[1]:
            raise ModelMismatchError(
                f"The query vector has {dim} dimensions but the blocked concepts have "
                f"{self._concepts.shape[1]}: they were embedded with different models.")

    def check(self, prompt: str | None, text_vector: np.ndarray | None = None,
              image_vector: np.ndarray | None = None) -> Decision:
        """Everything that applies, cheapest first: terms, then the text vector, then the image vector."""
        if prompt:
            decision = self.check_text(prompt)
            if not decision.allowed:
                return decision
        if text_vector is not None:
            decision = self.check_vector(text_vector, kind="text")
            if not decision.allowed:
                return decision
        if image_vector is not None:
            return self.check_vector(image_vector, kind="image")
        return ALLOWED
