"""Run the probe prompts: one batch encoding, a search each, and what moderation would do.

The prompts are encoded in one call (sentence-transformers batches them: 100 prompts cost about
as much as a few single queries) and searched with the vectors, exactly as the bot searches,
hidden rows left out inside the search. Each is searched as a text query, so the weak-match mark
is search's own judgment (SearchPage.weak_match), the one the bot shows.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from review.prompts import Probe
from search_core.moderation import ModerationPolicy
from search_core.search import Hit, SearchService


@dataclass(frozen=True)
class ImageFlag:
    """Whether the concept filter would flag a hit's image, and the closest concept's category."""

    flagged: bool
    category: str | None = None


@dataclass(frozen=True)
class Verdict:
    """What the configured moderation does with a prompt; never which entry it matched."""

    checked: bool                       # False when no moderation list is configured
    term_refused: bool = False
    concept_refused: bool = False
    concept_category: str | None = None

    @property
    def allowed(self) -> bool:
        return not (self.term_refused or self.concept_refused)


@dataclass(frozen=True)
class ProbeResult:
    probe: Probe
    anchor: str                         # the id of its section in the page
    hits: tuple[Hit, ...]
    flags: tuple[ImageFlag, ...] | None   # per hit; None without a concept list
    verdict: Verdict
    weak: bool | None                   # search's mark; None without a weak-match scale (or hits)

    @property
    def best_score(self) -> float | None:
        return self.hits[0].score if self.hits else None

    @property
    def flagged(self) -> int:
        return sum(f.flagged for f in self.flags or ())


def run_probes(service: SearchService, probes: Sequence[Probe], *, k: int,
               policy: ModerationPolicy | None) -> list[ProbeResult]:
    """Every prompt's top k, moderation verdict, flagged hits and weak-match mark, in prompt order."""
    if not probes:
        return []
    vectors = service.encode_text([p.text for p in probes])   # the text model's, if the service has one
    anchors = unique_anchors([p.text for p in probes])
    results = []
    for probe, vector, anchor in zip(probes, vectors, anchors):
        page = service.search_vector(vector, k=k, text_query=True)
        hits = tuple(page.hits)
        flags = None
        if policy is not None and policy.has_concepts and hits:
            rows = [h.row for h in hits]
            flags = flag_images(policy, np.asarray(service.collection.embeddings[rows]))
        results.append(ProbeResult(probe=probe, anchor=anchor, hits=hits, flags=flags,
                                   verdict=moderate(policy, probe.text, vector), weak=page.weak_match))
    return results


def moderate(policy: ModerationPolicy | None, prompt: str, vector: np.ndarray) -> Verdict:
    """Both rules on their own, so the report shows a prompt that the term list and the concept
    list would each refuse (the bot stops at the first)."""
    if policy is None:
        return Verdict(checked=False)
    by_term = not policy.check_text(prompt).allowed
    concept = policy.check_vector(vector, kind="text")
    return Verdict(checked=True, term_refused=by_term, concept_refused=not concept.allowed,
                   concept_category=concept.concept_category)


def flag_images(policy: ModerationPolicy, vectors: np.ndarray) -> tuple[ImageFlag, ...]:
    """One ImageFlag per image vector: would the concept filter refuse it as an image query?"""
    flags = [ImageFlag(False)] * len(vectors)
    for flag in policy.flag_vectors(vectors, kind="image"):
        flags[flag.index] = ImageFlag(True, flag.category)
    return tuple(flags)


def unique_anchors(texts: Sequence[str], prefix: str = "p-") -> list[str]:
    """URL-safe ids from prompt texts ("a ship" -> "p-a-ship"), numbered where two would clash."""
    used: set[str] = set()
    anchors = []
    for text in texts:
        ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
        slug = prefix + (re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")[:60].strip("-") or "prompt")
        anchor, n = slug, 1
        while anchor in used:
            n += 1
            anchor = f"{slug}-{n}"
        used.add(anchor)
        anchors.append(anchor)
    return anchors
