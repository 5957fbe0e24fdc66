"""What the report says moderation would do: per rule, with the concept's category, per image."""

from __future__ import annotations

import numpy as np

from review.probing import ImageFlag, Verdict, flag_images, moderate
from search_core.moderation import ModerationPolicy
from tests.fixtures.synthetic_collection import FakeEncoder


def test_each_rule_is_reported_on_its_own_with_the_concept_category() -> None:
    encoder = FakeEncoder(dim=16)
    policy = ModerationPolicy.from_phrases(["ship"], ["transport: a sailing ship"], encoder)
    vector = encoder.encode_text(["a sailing ship"])[0]
    assert moderate(policy, "a sailing ship", vector) == Verdict(
        checked=True, term_refused=True, concept_refused=True, concept_category="transport")
    other = encoder.encode_text(["a cat"])[0]
    assert moderate(policy, "a cat", other) == Verdict(checked=True)
    assert moderate(policy, "a s.h.i.p at sea", other).term_refused
    assert moderate(None, "a sailing ship", vector) == Verdict(checked=False)
    assert Verdict(checked=False).allowed and not Verdict(checked=True, concept_refused=True).allowed


def test_flag_images_marks_exactly_the_rows_the_filter_refuses() -> None:
    encoder = FakeEncoder(dim=16)
    policy = ModerationPolicy.from_phrases([], ["violence: a battle", "nudity: a nude"], encoder,
                                           image_threshold=0.9)
    battle, nude = encoder.encode_text(["a battle", "a nude"])
    rng = np.random.default_rng(0)
    noise = rng.standard_normal((2, 16)).astype(np.float32)
    vectors = np.stack([noise[0], battle, noise[1], nude])
    assert flag_images(policy, vectors) == (ImageFlag(False), ImageFlag(True, "violence"), ImageFlag(False),
                                            ImageFlag(True, "nudity"))
