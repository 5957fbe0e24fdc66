"""Query arithmetic: a prompt that adds and subtracts terms, e.g. ``steam engine + night - people``.

The rules, chosen so that ordinary prompts mean what they always meant:

- ``+`` and ``-`` are operators only as words of their own, with a space (or the end of the
  prompt) on both sides: ``ship + storm - people``. ``nineteenth-century ship`` and ``C++`` are
  plain text. A word that starts with a sign (``ship -people``) is refused with a hint, since it
  almost certainly meant subtraction and would otherwise be searched as text.
- A weight goes before a term: ``2*steam engine``, ``0.5 * night`` (a number above 0, at most
  `MAX_WEIGHT`). A term's sign comes from the operator before it; the first term may start with
  one (``- people + ship``).
- Double quotes make anything literal: ``"jack-in-the-box" - "+"``. Typographic quotes phones
  insert (“ ” „ « » ”) work too. The quotes themselves are not searched.
- At most `MAX_TERMS` text terms; at least one term (or the attached image) must be positive.

`parse_query` raises `QueryExpressionError`, a `QueryError` whose message says at which
character (1-based) the expression is wrong and why, without repeating the user's words.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from search_core.errors import QueryError

MAX_TERMS = 10
MAX_WEIGHT = 10.0
PLUS = frozenset({"+", "＋"})
MINUS = frozenset({"-", "−", "－"})     # ASCII, the minus sign, the full-width form
# Opening quote -> the quotes that may close it.
QUOTES = {'"': '"', "“": "”“", "„": "“”", "«": "»", "”": "”"}
_WEIGHT = re.compile(r"(\d+(?:\.\d+)?|\.\d+)\s*\*\s*")
NEED_QUERY = "Give a prompt, an image, or both."


class QueryExpressionError(QueryError):
    """A malformed expression; ``position`` is the 1-based character where it goes wrong."""

    def __init__(self, position: int, problem: str) -> None:
        super().__init__(f"The prompt cannot be read at character {position}: {problem}")
        self.position = position


@dataclass(frozen=True)
class Term:
    """One text term: what is encoded, and its signed weight (+1 for a plain prompt)."""

    text: str
    weight: float
    position: int | None = None     # 1-based character in the prompt; None for --add/--subtract

    @property
    def positive(self) -> bool:
        return self.weight > 0


@dataclass(frozen=True)
class QueryExpression:
    """The text terms of a query, in order. A plain prompt is one term of weight 1."""

    terms: tuple[Term, ...]

    @property
    def texts(self) -> list[str]:
        return [t.text for t in self.terms]

    @property
    def weights(self) -> list[float]:
        return [t.weight for t in self.terms]

    @property
    def is_arithmetic(self) -> bool:
        return len(self.terms) > 1 or any(t.weight != 1.0 for t in self.terms)

    def __str__(self) -> str:
        """A canonical spelling, e.g. ``2*"steam engine" - "people"`` (for logs and labels)."""
        parts = []
        for i, t in enumerate(self.terms):
            sign = ("- " if not t.positive else "+ " if i else "")
            weight = "" if abs(t.weight) == 1.0 else f"{abs(t.weight):g}*"
            parts.append(f"{sign}{weight}\"{t.text}\"")
        return " ".join(parts)


@dataclass(frozen=True)
class _Word:
    text: str
    quoted: list[bool]     # per character: inside quotes (literal)
    start: int             # 0-based


def parse_query(prompt: str | None, add: Sequence[str] = (), subtract: Sequence[str] = (), *,
                has_image: bool = False) -> QueryExpression:
    """The terms of ``prompt`` plus literal ``add`` / ``subtract`` terms (weight +1 / -1).

    Raises QueryError when there is nothing to search for (no positive term and no image) and
    QueryExpressionError, with the position, when the prompt is malformed.
    """
    from search_core.search import check_prompt

    terms: list[Term] = []
    text = check_prompt(prompt) if prompt is not None and prompt.strip() else None
    if text is not None:
        offset = len(prompt) - len(prompt.lstrip())   # positions count in what the user typed
        terms.extend(_parse(text, offset))
    for values, sign, option in ((add, 1.0, "--add"), (subtract, -1.0, "--subtract")):
        for value in values:
            literal = " ".join(str(value).split())
            if not literal:
                raise QueryError(f"An {option} term is empty.")
            terms.append(Term(literal, sign))
    if len(terms) > MAX_TERMS:
        raise QueryError(f"The query has {len(terms)} terms; the limit is {MAX_TERMS}.")
    if not terms and not has_image:
        raise QueryError(NEED_QUERY)
    if terms and not has_image and not any(t.positive for t in terms):
        raise QueryError("The query only subtracts: add something to search for "
                         "(a term without a minus, or an image).")
    return QueryExpression(tuple(terms))


def _parse(text: str, offset: int) -> list[Term]:
    terms: list[Term] = []
    sign: float = 1.0
    sign_at: int | None = None        # where the pending operator is, if one is pending
    words: list[_Word] = []
    for token in _tokens(text):
        if isinstance(token, tuple):                     # an operator
            op, at = token
            if words:
                terms.append(_term(words, sign, offset))
                words = []
            elif sign_at is not None:
                raise QueryExpressionError(at + offset + 1, f'"{op}" follows another operator with no term between.')
            sign, sign_at = (1.0 if op in PLUS else -1.0), at
        else:
            words.append(token)
    if words:
        terms.append(_term(words, sign, offset))
    elif sign_at is not None:
        raise QueryExpressionError(sign_at + offset + 1, "an operator needs a term after it.")
    return terms


def _tokens(text: str) -> list[_Word | tuple[str, int]]:
    """Whitespace-separated words (quotes group and are removed) and stand-alone operators."""
    out: list[_Word | tuple[str, int]] = []
    i, n = 0, len(text)
    while i < n:
        if text[i].isspace():
            i += 1
            continue
        start, chars, quoted = i, [], []
        while i < n and not text[i].isspace():
            c = text[i]
            if c in QUOTES:
                close = _find_close(text, i)
                inner = text[i + 1:close]
                if not inner.strip():
                    raise QueryExpressionError(i + 1, "the quotes are empty.")
                chars.extend(inner)
                quoted.extend([True] * len(inner))
                i = close + 1
            else:
                chars.append(c)
                quoted.append(False)
                i += 1
        word = "".join(chars)
        if not any(quoted) and (word in PLUS or word in MINUS):
            out.append((word, start))
            continue
        if not quoted[0] and word[0] in PLUS | MINUS and len(word) > 1 and not word[1].isdigit():
            raise QueryExpressionError(
                start + 1, f'a word starts with "{word[0]}". To add or subtract, put spaces on both sides '
                           '("ship - people"); to search for the word as written, put it in double quotes.')
        out.append(_Word(word, quoted, start))
    return out


def _find_close(text: str, i: int) -> int:
    closers = QUOTES[text[i]]
    for j in range(i + 1, len(text)):
        if text[j] in closers:
            return j
    raise QueryExpressionError(i + 1, "this quote is never closed.")


def _term(words: list[_Word], sign: float, offset: int) -> Term:
    """Join a term's words; read a leading weight from its unquoted characters."""
    text = " ".join(w.text for w in words)
    quoted = [q for k, w in enumerate(words) for q in ([False] if k else []) + w.quoted]
    position = words[0].start + offset + 1
    weight = 1.0
    match = _WEIGHT.match(text)
    if match and not any(quoted[:match.end()]):
        weight = float(match.group(1))
        if not 0 < weight <= MAX_WEIGHT:
            raise QueryExpressionError(position, f"a weight must be above 0 and at most {MAX_WEIGHT:g}.")
        text = text[match.end():]
        if not text.strip():
            raise QueryExpressionError(position, "a weight needs a term after it.")
    return Term(" ".join(text.split()), sign * weight, position)
