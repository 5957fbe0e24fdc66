"""One query vector from a parsed expression and an optional image, moderated part by part.

Each text term gets its own vector and its own checks, and so does the combination, because
arithmetic can build a refused subject out of innocent parts (or hide one inside a sum):

1. `check_terms` (no model, microseconds: the bot calls it before deferring): blocked terms in
   every term, and in all the terms read together (a phrase split by an operator).
2. `encode_expression` (one batch through the text model, in a worker): blocked concepts for
   every text term's vector and for the attached image's; then for the combined text vector
   (when there are several terms); then the weighted sum of all unit vectors, normalised.

Subtracted terms are checked like added ones: a word refused in a prompt is refused after a
minus too. A vector mixing an image and text has no calibrated concept threshold (text-text
cosines run near 0.85 where image-text ones run near 0.28), so with an image the image and the
text part are each checked, not the mixture.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from search_core.errors import QueryError
from search_core.query_expr import QueryExpression

if TYPE_CHECKING:
    from PIL import Image

    from search_core.moderation import Decision, ModerationPolicy
    from search_core.search import SearchService

# A combination shorter than this share of its total weight has cancelled out: for two unit
# terms of weight 1 and -1 that is cosine > 0.98 between them (the same words, give or take
# case and punctuation); what is left is noise, not a direction.
CANCEL_MIN_NORM = 0.1
CANCELLED = "The terms of this query cancel each other out; there is nothing left to search for."


@dataclass(frozen=True)
class EncodedQuery:
    """The query vector, or the refusal. ``part`` names what was refused, for the audit log
    ("term 2", "image", "combination"), never the words themselves."""

    vector: np.ndarray | None
    decision: Decision | None = None
    part: str | None = None

    @property
    def allowed(self) -> bool:
        return self.vector is not None


def check_terms(expression: QueryExpression, policy: ModerationPolicy | None) -> Decision | None:
    """The first blocked-term refusal among the terms, or None. No model: safe before deferring."""
    if policy is None or not expression.terms:
        return None
    texts = expression.texts
    for text in texts + ([" ".join(texts)] if len(texts) > 1 else []):
        decision = policy.check_text(text)
        if not decision.allowed:
            return decision
    return None


def encode_expression(service: SearchService, expression: QueryExpression, image: Image.Image | None = None,
                      policy: ModerationPolicy | None = None) -> EncodedQuery:
    """Encode, moderate by meaning, and combine (see the module docstring for the order).

    Blocked terms are `check_terms`' job and are not repeated here. QueryError when the terms
    cancel out or there is nothing to encode.
    """
    if not expression.terms and image is None:
        raise QueryError("Give a prompt, an image, or both.")
    vectors: list[np.ndarray] = []
    weights: list[float] = []
    if expression.terms:
        text_vectors = service.encode_text(expression.texts)
        for i, vector in enumerate(text_vectors):
            refused = _check(policy, vector, "text", f"term {i + 1}")
            if refused is not None:
                return refused
        vectors.extend(text_vectors)
        weights.extend(expression.weights)
        if len(expression.terms) > 1:
            text_sum = weighted_sum(text_vectors, expression.weights)
            if text_sum is not None:
                refused = _check(policy, text_sum, "text", "combination")
                if refused is not None:
                    return refused
    if image is not None:
        image_vector = service.encode_query(image=image)
        refused = _check(policy, image_vector, "image", "image")
        if refused is not None:
            return refused
        vectors.append(image_vector)
        weights.append(1.0)
    combined = weighted_sum(vectors, weights)
    if combined is None:
        raise QueryError(CANCELLED)
    return EncodedQuery(combined)


def weighted_sum(vectors: Any, weights: list[float]) -> np.ndarray | None:
    """The normalised weighted sum of unit vectors, or None when it cancels out (`CANCEL_MIN_NORM`)."""
    stacked = np.asarray(vectors, dtype=np.float32).reshape(len(weights), -1)
    w = np.asarray(weights, dtype=np.float32)
    total = stacked.T @ w
    norm = float(np.linalg.norm(total))
    if not np.isfinite(norm) or norm < CANCEL_MIN_NORM * float(np.abs(w).sum()):
        return None
    return total / norm


def _check(policy: ModerationPolicy | None, vector: np.ndarray, kind: str, part: str) -> EncodedQuery | None:
    if policy is None:
        return None
    decision = policy.check_vector(vector, kind=kind)   # type: ignore[arg-type]
    return None if decision.allowed else EncodedQuery(None, decision, part)
