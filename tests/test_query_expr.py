"""search_core.query_expr: the query arithmetic parser (no model)."""

from __future__ import annotations

import pytest

from search_core.errors import QueryError
from search_core.query_expr import MAX_TERMS, QueryExpressionError, parse_query


def terms(prompt: str, **kwargs) -> list[tuple[str, float]]:
    return [(t.text, t.weight) for t in parse_query(prompt, **kwargs).terms]


@pytest.mark.parametrize(("prompt", "expected"), [
    ("a steam engine", [("a steam engine", 1.0)]),
    ("steam engine + night - people", [("steam engine", 1.0), ("night", 1.0), ("people", -1.0)]),
    ("2*steam engine + 0.5*night", [("steam engine", 2.0), ("night", 0.5)]),
    ("2 * steam engine - .5 * people", [("steam engine", 2.0), ("people", -0.5)]),
    ("- people + ship", [("people", -1.0), ("ship", 1.0)]),
    ("+ ship", [("ship", 1.0)]),
    ("ship   +\tstorm", [("ship", 1.0), ("storm", 1.0)]),
    ("ship − people", [("ship", 1.0), ("people", -1.0)]),          # the Unicode minus sign
    ("ship ＋ storm", [("ship", 1.0), ("storm", 1.0)]),             # full-width plus (CJK keyboards)
])
def test_terms_and_weights(prompt: str, expected: list[tuple[str, float]]) -> None:
    """Operators between terms, weights before them, the sign from the operator."""
    assert terms(prompt) == expected


@pytest.mark.parametrize("prompt", [
    "a nineteenth-century ship", "jack-in-the-box", "C++ manual", "ship- and boat-building", "x-ray",
    "temperature -5 degrees", "3 ships", "ships*2", "a+b",
])
def test_hyphens_and_signs_inside_words_are_text(prompt: str) -> None:
    """Only a stand-alone + or - is an operator: hyphenated words, numbers and a+b stay one term."""
    assert terms(prompt) == [(" ".join(prompt.split()), 1.0)]


@pytest.mark.parametrize(("prompt", "expected"), [
    ('"jack-in-the-box" - people', [("jack-in-the-box", 1.0), ("people", -1.0)]),
    ('ship + "-" + "+"', [("ship", 1.0), ("-", 1.0), ("+", 1.0)]),
    ('"a - b"', [("a - b", 1.0)]),
    ('2*"jack-in-the-box"', [("jack-in-the-box", 2.0)]),
    ('"2*x"', [("2*x", 1.0)]),
    ('the "Great Eastern" steamship', [("the Great Eastern steamship", 1.0)]),
    ("“ship - storm” - people", [("ship - storm", 1.0), ("people", -1.0)]),   # phones' curly quotes
    ("„Dampfschiff - Sturm“ + Nacht", [("Dampfschiff - Sturm", 1.0), ("Nacht", 1.0)]),
    ("«navire - tempête» + nuit", [("navire - tempête", 1.0), ("nuit", 1.0)]),
    ('"-people" + ship', [("-people", 1.0), ("ship", 1.0)]),
])
def test_quotes_make_text_literal(prompt: str, expected: list[tuple[str, float]]) -> None:
    """Inside quotes + and - and weights are text; the quotes themselves are not searched."""
    assert terms(prompt) == expected


@pytest.mark.parametrize(("prompt", "position", "words"), [
    ("ship -", 6, "needs a term after it"),
    ("ship - ", 6, "needs a term after it"),
    ("ship + + storm", 8, "follows another operator"),
    ("ship + - storm", 8, "follows another operator"),
    ("-", 1, "needs a term after it"),
    ("ship -people", 6, "starts with"),
    ("+night ship", 1, "starts with"),
    ("ship --storm", 6, "starts with"),
    ('ship + "storm', 8, "never closed"),
    ("ship + “storm", 8, "never closed"),
    ('ship + ""', 8, "quotes are empty"),
    ("0*ship", 1, "above 0"),
    ("ship + 11*storm", 8, "at most 10"),
    ("ship + 2*", 8, "weight needs a term"),
    ("ship - 2 *", 8, "weight needs a term"),
])
def test_malformed_says_where(prompt: str, position: int, words: str) -> None:
    """A malformed expression names the 1-based character where it goes wrong, and why."""
    with pytest.raises(QueryExpressionError) as info:
        parse_query(prompt)
    assert info.value.position == position
    assert f"at character {position}:" in str(info.value) and words in str(info.value)


def test_positions_count_leading_spaces() -> None:
    """Positions refer to the prompt as typed, leading spaces included."""
    with pytest.raises(QueryExpressionError) as info:
        parse_query("   ship -")
    assert info.value.position == 9


def test_messages_do_not_repeat_the_words() -> None:
    """A parse error names the operator or position, never the user's words (they may be refused ones)."""
    with pytest.raises(QueryExpressionError) as info:
        parse_query("secretword -otherword")
    assert "secretword" not in str(info.value) and "otherword" not in str(info.value)


def test_add_and_subtract_are_literal_terms() -> None:
    """--add / --subtract values are taken as written: no operators, quotes or weights read."""
    expr = parse_query("ship", add=["storm - night"], subtract=["2*people", '"crowd"'])
    assert [(t.text, t.weight) for t in expr.terms] == [
        ("ship", 1.0), ("storm - night", 1.0), ("2*people", -1.0), ('"crowd"', -1.0)]
    assert expr.terms[1].position is None


def test_only_add_is_enough() -> None:
    assert terms(None, add=["ship"]) == [("ship", 1.0)]


@pytest.mark.parametrize(("prompt", "kwargs", "words"), [
    (None, {}, "Give a prompt"),
    ("   ", {}, "Give a prompt"),
    ("- people", {}, "only subtracts"),
    (None, {"subtract": ["people"]}, "only subtracts"),
    ("ship", {"add": ["  "]}, "--add term is empty"),
    (" + ".join(["ship"] * (MAX_TERMS + 1)), {}, f"limit is {MAX_TERMS}"),
    ("x" * 1001, {}, "too long"),
])
def test_nothing_to_search_for(prompt: str | None, kwargs: dict, words: str) -> None:
    """No terms, only negative terms, empty or too many terms: a QueryError saying so."""
    with pytest.raises(QueryError, match=words):
        parse_query(prompt, **kwargs)


def test_an_image_is_a_positive_term() -> None:
    """With an image, a prompt may only subtract, and may be absent."""
    assert terms("- people", has_image=True) == [("people", -1.0)]
    assert parse_query(None, has_image=True).terms == ()


def test_plain_prompt_is_not_arithmetic() -> None:
    assert not parse_query("a steam engine").is_arithmetic
    assert parse_query("2*ship").is_arithmetic and parse_query("ship + storm").is_arithmetic


def test_str_is_canonical_and_reparses() -> None:
    """str() spells the terms quoted, so it parses back to the same terms."""
    expr = parse_query('2*steam engine - "jack-in-the-box" + 0.5*night')
    assert str(expr) == '2*"steam engine" - "jack-in-the-box" + 0.5*"night"'
    assert terms(str(expr)) == [(t.text, t.weight) for t in expr.terms]
