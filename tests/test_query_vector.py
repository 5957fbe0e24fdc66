"""search_core.query_vector: arithmetic turned into one query vector, moderated part by part."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from search_core.collection import Collection
from search_core.errors import QueryError
from search_core.moderation import ModerationPolicy
from search_core.query_expr import parse_query
from search_core.query_vector import check_terms, encode_expression, weighted_sum
from search_core.search import SearchService, combine_query_vectors
from tests.fixtures.images import draw_image
from tests.fixtures.synthetic_collection import FakeEncoder, unit_vectors, write_collection

DIM = 16


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> SearchService:
    folder = write_collection(tmp_path_factory.mktemp("arith") / "c", unit_vectors(200, DIM, seed=3))
    return SearchService(Collection.open(folder), FakeEncoder(DIM))


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def text_vector(text: str) -> np.ndarray:
    return FakeEncoder(DIM).encode_text([text])[0]


def encode(service: SearchService, prompt: str | None, image: Image.Image | None = None,
           policy: ModerationPolicy | None = None, **kwargs):
    return encode_expression(service, parse_query(prompt, has_image=image is not None, **kwargs), image, policy)


def test_plain_prompt_is_the_plain_vector(service: SearchService) -> None:
    """One term of weight 1 gives exactly the vector a plain prompt always gave, so results do not change."""
    np.testing.assert_allclose(encode(service, "a steam engine").vector,
                               service.encode_query(text="a steam engine"), atol=1e-6)


def test_weights_and_signs(service: SearchService) -> None:
    """The query is the normalised weighted sum of each term's unit vector."""
    got = encode(service, "2*steam engine + night - 0.5*people").vector
    want = unit(2 * text_vector("steam engine") + text_vector("night") - 0.5 * text_vector("people"))
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_add_and_subtract_options(service: SearchService) -> None:
    got = encode(service, "ship", add=["storm"], subtract=["people"]).vector
    np.testing.assert_allclose(got, unit(text_vector("ship") + text_vector("storm") - text_vector("people")),
                               atol=1e-6)


def test_image_is_one_more_term(service: SearchService) -> None:
    """Prompt + image is what combine_query_vectors gave; an image can have text subtracted from it."""
    img = draw_image(5)
    image_vector = service.encode_query(image=img)
    np.testing.assert_allclose(encode(service, "ship", img).vector,
                               combine_query_vectors(text_vector("ship"), image_vector), atol=1e-6)
    np.testing.assert_allclose(encode(service, "- people", img).vector,
                               unit(image_vector - text_vector("people")), atol=1e-6)


@pytest.mark.parametrize("prompt", ["ship - ship", "2*ship - 2*ship", "ship + storm - ship - storm",
                                    "0.5*ship + 0.5*ship - ship"])
def test_cancelling_out_is_a_clear_error(service: SearchService, prompt: str) -> None:
    with pytest.raises(QueryError, match="cancel each other out"):
        encode(service, prompt)


def test_cancel_threshold_is_relative_to_the_weights() -> None:
    """Nearly identical terms cancel (cosine 0.99); distinct ones do not, whatever the weights' scale."""
    a = np.zeros(DIM, np.float32)
    a[0] = 1.0
    near = unit(a + 0.1 * np.eye(DIM, dtype=np.float32)[1])      # cosine 0.995 with a
    other = unit(a + np.eye(DIM, dtype=np.float32)[1])           # cosine 0.71
    assert weighted_sum([a, near], [1.0, -1.0]) is None
    assert weighted_sum([a, near], [5.0, -5.0]) is None
    assert weighted_sum([a, other], [1.0, -1.0]) is not None
    assert weighted_sum([a, other], [0.1, -0.1]) is not None


# --- moderation ----------------------------------------------------------------------------

def test_blocked_terms_in_every_term_and_across_operators() -> None:
    """check_terms refuses a blocked word in any term (added or subtracted), and a blocked phrase
    split by an operator; innocent terms pass. No model needed."""
    policy = ModerationPolicy(terms=["cannon", "naval battle"])
    for prompt in ("ship + cannon", "ship - cannon", "2*c4nnon + ship", "naval + battle"):
        decision = check_terms(parse_query(prompt), policy)
        assert decision is not None and decision.category == "blocked_term", prompt
    for prompt in ("ship + storm", "naval + ship", "battle - naval ship"):
        assert check_terms(parse_query(prompt), policy) is None, prompt
    assert check_terms(parse_query("ship", subtract=["cannon"]), policy) is not None
    assert check_terms(parse_query("ship + cannon"), None) is None


def test_each_term_is_checked_by_meaning(service: SearchService) -> None:
    """A term close to a blocked concept refuses the query, added or subtracted, and says which term."""
    policy = ModerationPolicy(concept_vectors=text_vector("a skull")[None])
    for prompt, part in (("ship + a skull", "term 2"), ("a skull - night", "term 1"), ("ship - a skull", "term 2")):
        result = encode(service, prompt, policy=policy)
        assert not result.allowed and result.vector is None
        assert (result.decision.category, result.part) == ("blocked_concept", part)
    assert encode(service, "ship + storm", policy=policy).allowed


def test_the_combination_is_checked(service: SearchService) -> None:
    """Two terms each far from a concept (cosine ~0.7 < 0.85) whose sum is the concept are refused
    as a combination: arithmetic cannot assemble a blocked subject from innocent parts."""
    concept = unit(text_vector("ship") + text_vector("storm"))
    assert max(concept @ text_vector("ship"), concept @ text_vector("storm")) < 0.85
    policy = ModerationPolicy(concept_vectors=concept[None])
    result = encode(service, "ship + storm", policy=policy)
    assert (result.allowed, result.part) == (False, "combination")
    assert encode(service, "ship - storm", policy=policy).allowed


def test_the_image_is_checked_as_an_image(service: SearchService) -> None:
    img = draw_image(9)
    policy = ModerationPolicy(concept_vectors=service.encode_query(image=img)[None])
    result = encode(service, "ship", img, policy=policy)
    assert (result.allowed, result.part) == (False, "image")
    assert encode(service, "ship", draw_image(10), policy=policy).allowed


def test_service_search_page_with_the_vector(service: SearchService) -> None:
    """The encoded vector searches like any other (the CLI path)."""
    vector = encode(service, "ship + storm - people").vector
    page = service.search_page(vector, k=5)
    assert len(page.hits) == 5 and page.hits[0].score >= page.hits[-1].score
