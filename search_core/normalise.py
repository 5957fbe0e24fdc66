"""Text normalisation for blocked-term matching: undo the tricks people use to slip a word past a list.

Two halves, applied to the prompt and to every list entry alike so they meet in one form:

- ``canonical(text)`` removes what changes how text is *encoded* but not how it *reads*: Unicode
  compatibility forms (NFKC: fullwidth ``ｋｉｌｌ``, mathematical ``𝐤𝐢𝐥𝐥``, circled letters),
  invisible characters (zero-width spaces and joiners, soft hyphens, fillers), accents, case, and
  look-alike letters from other scripts (Cyrillic ``а``, Greek ``ο``), mapped to the Latin letter
  they imitate with the Unicode TR39 confusables data that ``confusable_homoglyphs`` ships.
- ``TermMatcher`` compiles each entry into a pattern that accepts what changes how text is
  *spelled* but not what it *says*: leetspeak (``k1ll``, ``@``), stretched letters (``kiiill``),
  letters spaced or dotted out one by one (``k i l l``, ``k.i.l.l``), punctuation inside a word
  (``ki.ll``) and any separators between the words of a phrase. Matches are on word boundaries,
  so ``skill``, ``skillet`` and ``Scunthorpe``-style words that merely contain an entry pass.

Deliberate limits, each to keep innocent prompts passing:

- Only *single* characters between separators are joined: ``k i l l`` is caught, but ``sk ill``
  and ``milk illustrations`` are not read as ``kill``; so neither is ``k ill``.
- A word made only of digits, or digits plus a decade/ordinal suffix (``1850s``, ``55``,
  ``19th``), is never read as leetspeak, unless the list entry itself contains a digit. Digits
  mixed with leetspeak symbols are not a number: ``8!tch`` and ``4$$`` are caught, ``455!`` passes.
- An entry matches its own word only: ``kill`` does not match ``kills``; list each form.
- A letter typed three or more times counts as two; an entry's single letter accepts one or two,
  its double letter needs two (so ``ass`` does not match ``as``).
- Uppercase ``I`` and look-alikes of ``l``/``I`` stand for either ``i`` or ``l`` (they look the
  same in most fonts), so an all-capitals word may match an entry that differs by i/l only.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from functools import lru_cache

from confusable_homoglyphs import confusables as _confusables

# Stands for "i or l": what uppercase I and the TR39 look-alikes of l/I/1/| become. A letter (so
# word boundaries treat it as part of a word) that canonical() never produces otherwise.
AMBIGUOUS_IL = "\u0131"

# Characters that render as nothing or as blank space and can be slipped inside a word. Format
# characters (category Cf: zero-width space/joiners, soft hyphen, BOM, bidi marks) are removed by
# category; these are the invisible ones in other categories.
_INVISIBLE = frozenset("\u034f\u115f\u1160\u17b4\u17b5\u180e\u2800\u3164\uffa0")

# Leetspeak: for each letter of a list entry, the characters a prompt may use instead.
LEET: dict[str, str] = {
    "a": "a4@",
    "b": "b8",
    "c": "c(",
    "e": "e3",
    "g": "g69",
    "i": "i1!|" + AMBIGUOUS_IL,
    "l": "l1|" + AMBIGUOUS_IL,
    "o": "o0",
    "s": "s5$",
    "t": "t7+",
    "z": "z2",
}
LEET[AMBIGUOUS_IL] = "".join(dict.fromkeys(LEET["i"] + LEET["l"]))
# Symbols that count as letters of a word when spaced out (``k ! l l``); elsewhere they are
# punctuation, so ``kill!`` still ends at a word boundary.
_LEET_SYMBOLS = "@$!|+("

_WORD = r"[^\W_]"                                   # a Unicode letter or digit
_UNIT = rf"(?:{_WORD}|[{re.escape(_LEET_SYMBOLS)}])"  # one character of a spaced-out word
_SEP = rf"(?:[^\w{re.escape(_LEET_SYMBOLS)}]|_)"      # anything else: spaces, punctuation, emoji
# Two or more single characters, each standing alone between separators: "k i l l", "k.i.l.l".
_SPACED_OUT = re.compile(rf"(?<!{_UNIT}){_UNIT}(?:{_SEP}+{_UNIT}(?!{_UNIT}))+")
# Punctuation (not spaces) inside a word: "ki.ll", "ki-ll".
_INWORD_PUNCT = re.compile(rf"(?<={_WORD})(?:(?!\s){_SEP})+(?={_WORD})")
_SEP_RUN = re.compile(rf"{_SEP}+")
# Stretched letters ("kiiiill") are shortened to two before matching, and each letter of an entry
# accepts one or two of its characters. Bounded repeats keep matching linear in the prompt's
# length: with open-ended ones, a long run of characters that several letters accept ("1111...",
# both i and l) made the regular expression backtrack for minutes.
_STRETCHED = re.compile(r"(.)\1{2,}")
# A numeric word (a year, a count, a decade, an ordinal) is never leetspeak. Checked on the text a
# match consumed, not by looking ahead from its start: a lookahead cannot tell "455!" (a number, then
# punctuation) from "8!tch" or "4$$" (a digit, then symbols that stand for letters).
_NUMBER = re.compile(r"\d+(?:s|st|nd|rd|th)?")


@lru_cache(maxsize=4096)
def _homoglyph(ch: str) -> str:
    """The ASCII letter or digit that ``ch`` imitates (TR39 confusables), or ``ch`` itself.

    Tried on the character and on its other case, so that a look-alike whose prototype is only
    listed for one case (Cyrillic ``к`` via ``К``) is still found.
    """
    for candidate in dict.fromkeys((ch, ch.upper(), ch.lower())):
        if len(candidate) != 1:
            continue
        if candidate.isascii():             # e.g. dotless i, whose capital is I
            if candidate.isalnum():
                return _ascii_target(candidate)
            continue
        # confusables_data: the package's parsed TR39 table, char -> [{"c": look-alike, "n": name}];
        # its public functions answer "is this string confusable", not "confusable with what".
        for glyph in _confusables.confusables_data.get(candidate, ()):
            target = glyph["c"].strip("\u200e\u200f")
            if len(target) == 1 and target.isascii() and (target.isalnum() or target == "|"):
                return _ascii_target(target)
    return ch


def _ascii_target(target: str) -> str:
    # I, l, 1 and | are confusable with each other: a look-alike of any of them stands for i or l.
    return AMBIGUOUS_IL if target in "Il1|" else target.lower()


def canonical(text: str) -> str:
    """One spelling for everything that reads the same: see the module docstring."""
    text = unicodedata.normalize("NFKC", text)
    out: list[str] = []
    for ch in unicodedata.normalize("NFD", text):
        cat = unicodedata.category(ch)
        if cat in ("Mn", "Me", "Cf") or ch in _INVISIBLE:
            continue                        # accents, zero-width and other invisible characters
        if cat == "Cc":
            if ch.isspace():
                out.append(" ")
            continue
        if ch == "I":
            out.append(AMBIGUOUS_IL)
        elif ch.isascii():
            out.append(ch.lower())
        else:
            out.append(_homoglyph(ch).casefold())
    return "".join(out)


def readings(prompt: str) -> tuple[str, ...]:
    """The canonical prompt as typed, and with spaced-out letters and in-word punctuation closed up.

    Each reading is searched separately: closing up "kill-switch" would otherwise hide "kill".
    """
    text = canonical(prompt)
    joined = _STRETCHED.sub(r"\1\1", _SPACED_OUT.sub(lambda m: _SEP_RUN.sub("", m.group()), text))
    closed = _STRETCHED.sub(r"\1\1", _INWORD_PUNCT.sub("", joined))
    return tuple(dict.fromkeys((joined, closed)))


def _letter_pattern(ch: str, count: int) -> str:
    """A run of one letter in an entry: a single letter may be doubled, a double stays double."""
    chars = LEET.get(ch, ch)
    cls = f"[{re.escape(chars)}]" if len(chars) > 1 else re.escape(chars)
    return f"{cls}{{1,2}}" if count == 1 else f"{cls}{{2}}"


def term_pattern(term: str) -> str | None:
    """A regular expression for one list entry, or None when nothing of it is left to match.

    The entry's start must also be a word start: TermMatcher adds that once for all entries.
    """
    words = [w for w in _SEP_RUN.split(_STRETCHED.sub(r"\1\1", canonical(term))) if w]
    if not words:
        return None
    parts = []
    for word in words:
        runs = [(m.group()[0], len(m.group())) for m in re.finditer(r"(.)\1*", word)]
        parts.append("".join(_letter_pattern(ch, n) for ch, n in runs))
    return rf"(?:{f'{_SEP}*'.join(parts)})(?!{_WORD})"


class TermMatcher:
    """All list entries compiled into one expression, built once when the policy loads."""

    def __init__(self, terms: Sequence[str]):
        self._rules: list[int] = []          # group number -> index of the entry in `terms`
        self._has_digit: list[bool] = []     # group number -> whether the entry is spelled with digits
        alternatives = []
        for i, term in enumerate(terms):
            pattern = term_pattern(term)
            if pattern is not None:
                alternatives.append(f"({pattern})")
                self._rules.append(i)
                self._has_digit.append(any(c.isdigit() for c in canonical(term)))
        # Each entry must start a word: asked once per position rather than once per entry.
        self._regex = re.compile(rf"(?<!{_WORD})(?:{'|'.join(alternatives)})") if alternatives else None

    def __len__(self) -> int:
        return len(self._rules)

    def find(self, prompt: str) -> int | None:
        """Index (in the entries given) of a blocked entry the prompt contains, or None."""
        if self._regex is None:
            return None
        for reading in readings(prompt):
            pos = 0
            while (m := self._regex.search(reading, pos)) is not None:
                rule = m.lastindex - 1
                if self._has_digit[rule] or not self._starts_with_number(m.group()):
                    return self._rules[rule]
                pos = m.start() + 1             # a year or a count, not leetspeak: look further on
        return None

    @staticmethod
    def _starts_with_number(matched: str) -> bool:
        """Whether a match's first word is a plain number ("455", "1850s", "19th").

        Such a match read digits as letters, which an entry spelled without digits must not do:
        "455" is a count, not "ass". Only digits and a decade or ordinal suffix count as a number,
        so "8!tch" and "4$$" (digits mixed with symbols that stand for letters) are still caught.
        """
        first = _SEP_RUN.split(matched, maxsplit=1)[0]
        return _NUMBER.fullmatch(first) is not None
