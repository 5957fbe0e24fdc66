"""Text normalisation for blocked-term matching: undo the tricks people use to slip a word past a list.

Two halves, applied to the prompt and to every list entry alike so they meet in one form:

- ``canonical(text)`` removes what changes how text is *encoded* but not how it *reads*: Unicode
  compatibility forms (NFKC: fullwidth ``ｋｉｌｌ``, mathematical ``𝐤𝐢𝐥𝐥``, circled letters),
  invisible characters (zero-width spaces and joiners, soft hyphens, fillers), accents, case, and
  look-alike letters from other scripts (Cyrillic ``а``, Greek ``ο``), mapped to the Latin letter
  they imitate with the Unicode TR39 confusables data that ``confusable_homoglyphs`` ships.
  ``in_own_script(text)`` does the same but keeps every letter in its script: Greek capitals and
  small letters imitate different Latin ones (``Ν`` looks like N, ``ν`` like v), so a Greek entry
  is also matched on this second reading, where ``ΦΟΝΟΣ`` and ``φόνος`` are one word.
- ``TermMatcher`` compiles each entry into a pattern that accepts what changes how text is
  *spelled* but not what it *says*: leetspeak (``k1ll``, ``@``), stretched letters (``kiiill``),
  letters spaced or dotted out one by one, with or without leetspeak (``k i l l``, ``k.1.l.l``,
  ``b 1 t c h``, ``k ! 1 l``), punctuation inside a word (``ki.ll``) and any separators between
  the words of a phrase. Matches are on word boundaries, so ``skill``, ``skillet`` and
  ``Scunthorpe``-style words that merely contain an entry pass.

List entries (one a line in the blocklist file):

- ``kill``: the word, and its regular English inflections (below). Entries in other scripts
  match their own word only.
- ``kill*``: any word that starts with the entry (as Discord AutoMod keyword lists read ``*``):
  kills, killer, killdeer, Killarney. ``*`` may only end an entry.
- ``"kill"``: in double quotes, the word alone, without inflections (for a word whose inflected
  form is innocent in your collection: ``"cock"`` leaves "cocked hat" alone).
- ``blow up``: a phrase; any separators, or none, between its words. Its last word is inflected.
- An entry in a script written without spaces (Chinese, Japanese, Thai, Lao, Khmer, Burmese)
  matches anywhere in the text, since no space marks where its word starts: list a stem (``殺``).

Inflections of an entry whose letters are all Latin (its last word, in a phrase), exactly:

- plural / 3rd person: ``+es`` after s, x, z, ch, sh or o (asses, punches), ``+s`` otherwise
  and after o; a consonant + y becomes ``ies`` (bully: bullies);
- past: ``+d`` after e (hated), consonant + y becomes ``ied`` (bullied), ``+ed`` otherwise;
- present participle: ``ie`` becomes ``ying`` (dying), a silent e is dropped (hating; but
  seeing, hoeing, dyeing keep it), ``+ing`` otherwise;
- before an ending a final single consonant may be doubled (stab: stabbed, stabbing).

In an inflected form only vowels may be stretched (leetspeak and spacing still apply): ``kiilled``
and ``raping`` are caught, while ``rapping`` and ``rapped`` (knocking) pass ``rape``. Endings that
are not inflections never match: ``killdeer`` and ``killer`` pass ``kill`` (list ``kill*`` for
them), ``assess`` passes ``ass``, and ``blowing up`` passes ``blow up`` (list it too).

Deliberate limits, each to keep innocent prompts passing:

- Spaced-out pieces are read together only when at least two of them are single letters (a
  doubled letter, the ``ll`` of ``k 1 ll``, may join them): ``k i l l`` and ``a k 1 ll`` are
  caught, while ``sk ill``, ``milk illustrations``, ``k ill`` and ``a SS officer`` are not.
- A word made only of digits, or digits plus a decade/ordinal suffix (``1850s``, ``55``,
  ``19th``), is never read as leetspeak, unless the list entry itself contains a digit. Digits
  mixed with leetspeak symbols are not a number: ``8!tch`` and ``4$$`` are caught, ``455!`` passes.
- A letter typed three or more times counts as two; an entry's single letter accepts one or two,
  its double letter needs two (so ``ass`` does not match ``as``).
- Uppercase ``I`` and look-alikes of ``l``/``I`` stand for either ``i`` or ``l`` (they look the
  same in most fonts), so an all-capitals word may match an entry that differs by i/l only.

Matching is one pass of one regular expression over each reading, with bounded repeats only: linear in
the prompt's length (a long run of characters several letters accept once made open-ended repeats
backtrack for minutes).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from confusable_homoglyphs import confusables as _confusables

# Stands for "i or l": what uppercase I and the TR39 look-alikes of l/I/1/| become. A letter (so
# word boundaries treat it as part of a word) that canonical() never produces otherwise.
AMBIGUOUS_IL = "\u0131"
# Joins letters that were spaced out one by one ("k i l l" reads "k⁣i⁣l⁣l"): an entry may run across
# it, and each spaced-out letter may also start or end a match on its own. INVISIBLE SEPARATOR is a
# format character, which canonical() removes, so it never comes from the prompt itself.
UNIT_BREAK = "\u2063"

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
_SEP = rf"(?:[^\w{re.escape(_LEET_SYMBOLS)}]|_)"      # anything else: spaces, punctuation, emoji, UNIT_BREAK
_BREAK = re.escape(UNIT_BREAK)
# Characters standing alone between separators, each one letter or one letter typed twice:
# "k i l l", "k.1.l.l", "k 1 ll". The backreferences make a two-letter piece a doubled letter.
_SPACED_OUT = re.compile(rf"(?<!{_UNIT})({_UNIT})\1?(?:{_SEP}+({_UNIT})\2?(?!{_UNIT}))+")
_SPACED_PIECE = re.compile(rf"{_UNIT}+")
# Punctuation (not spaces) inside a word: "ki.ll", "ki-ll".
_INWORD_PUNCT = re.compile(rf"(?<={_WORD})(?:(?!\s){_SEP})+(?={_WORD})")
_SEP_RUN = re.compile(rf"{_SEP}+")
# Stretched letters ("kiiiill", or spaced out "k i i i l l") are shortened to two before matching,
# and each letter of an entry accepts one or two of its characters. Bounded repeats keep matching
# linear in the prompt's length.
_STRETCHED = re.compile(r"(.)\1{2,}")
_STRETCHED_SPACED = re.compile(rf"([^{_BREAK}])(?:{_BREAK}\1){{2,}}")
# A numeric word (a year, a count, a decade, an ordinal) is never leetspeak. Checked on the text a
# match consumed, not by looking ahead from its start: a lookahead cannot tell "455!" (a number, then
# punctuation) from "8!tch" or "4$$" (a digit, then symbols that stand for letters).
_NUMBER = re.compile(r"\d+(?:s|st|nd|rd|th)?")
# Scripts written without spaces between words: an entry in them cannot wait for a word boundary.
_NO_SPACE_SCRIPTS = ("CJK", "HIRAGANA", "KATAKANA", "THAI", "LAO", "KHMER", "MYANMAR")
_VOWELS = "aeiou"

Form = Callable[[str], str]   # canonical or in_own_script: one way of reading text


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


def _fold(text: str, letter: Form) -> str:
    """NFKC, then accents, invisible and control characters out; ``letter`` spells what is left."""
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
        out.append(letter(ch))
    return "".join(out)


def _lookalike_letter(ch: str) -> str:
    if ch == "I":
        return AMBIGUOUS_IL
    if ch.isascii():
        return ch.lower()
    return _homoglyph(ch).casefold()


def canonical(text: str) -> str:
    """One spelling for everything that reads the same, look-alikes as Latin: see the module docstring."""
    return _fold(text, _lookalike_letter)


def in_own_script(text: str) -> str:
    """Like `canonical`, but each letter stays in its own script, case-folded (``ς``, ``Σ`` -> ``σ``)."""
    return _fold(text, str.casefold)


def readings(prompt: str, form: Form = canonical) -> tuple[str, ...]:
    """The prompt in ``form``, with spaced-out letters joined by UNIT_BREAK; and that again with
    punctuation inside words closed up.

    Each reading is searched separately: closing up "kill-switch" would otherwise hide "kill".
    """
    joined = _STRETCHED_SPACED.sub(r"\1" + UNIT_BREAK + r"\1", _SPACED_OUT.sub(_join_spaced, form(prompt)))
    joined = _STRETCHED.sub(r"\1\1", joined)
    closed = _STRETCHED.sub(r"\1\1", _INWORD_PUNCT.sub("", joined))
    return tuple(dict.fromkeys((joined, closed)))


def _join_spaced(match: re.Match) -> str:
    pieces = _SPACED_PIECE.findall(match.group())
    if sum(len(p) == 1 for p in pieces) < 2:
        return match.group()                # "a SS": one letter beside a word is not a spelled-out word
    return UNIT_BREAK.join(ch for piece in pieces for ch in piece)


# --- list entries -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Entry:
    """One blocklist line, parsed: its text, and whether it is a prefix (``kill*``) or exact (``"kill"``)."""

    text: str
    prefix: bool = False
    exact: bool = False

    @classmethod
    def parse(cls, line: str) -> Entry:
        """Raises ValueError for a ``*`` anywhere but at the end (the message quotes no entry text)."""
        text = line.strip()
        exact = len(text) >= 2 and text[0] == text[-1] == '"'
        if exact:
            text = text[1:-1].strip()
        prefix = not exact and text.endswith("*")
        if prefix:
            text = text.rstrip("*")
            if not re.search(rf"{_WORD}$", text):
                raise ValueError("'*' must directly follow a letter or digit (word*)")
        if "*" in text:
            raise ValueError("'*' may only end an entry (word*), as a prefix match")
        return cls(text, prefix, exact)

    @property
    def inflects(self) -> bool:
        """Whether English inflections apply: a plain entry whose letters are all Latin."""
        if self.prefix or self.exact:
            return False
        letters = [ch for ch in unicodedata.normalize("NFKC", self.text) if ch.isalpha()]
        words = _SEP_RUN.split(self.text.strip())
        return bool(letters) and all(unicodedata.name(ch, "").startswith("LATIN") for ch in letters) \
            and not any(ch.isdigit() for ch in words[-1])

    @property
    def anywhere(self) -> bool:
        """Whether the entry is in a script written without spaces, so it matches inside words."""
        return any(unicodedata.name(ch, "").startswith(_NO_SPACE_SCRIPTS) for ch in self.text)


def _runs(word: str) -> list[tuple[str, int]]:
    """"kill" -> [("k", 1), ("i", 1), ("l", 2)]."""
    return [(m.group()[0], len(m.group())) for m in re.finditer(r"(.)\1*", word)]


def _char_class(ch: str) -> str:
    chars = LEET.get(ch, ch)
    return f"[{re.escape(chars)}]" if len(chars) > 1 else re.escape(chars)


def _spelled(word: str, *, stretch: str = "all", double_last: bool = False) -> str:
    """A pattern for one word. Each character may be followed by a UNIT_BREAK (spaced out).

    ``stretch``: which single letters accept one or two ("all", "vowels" or "none"; a double
    always needs two). ``double_last``: the last letter may be doubled (stab, stabbed).
    """
    runs = _runs(word)
    parts = []
    for i, (ch, count) in enumerate(runs):
        loose = (stretch == "all" or (stretch == "vowels" and ch in _VOWELS + AMBIGUOUS_IL)
                 or (double_last and i == len(runs) - 1))
        reps = "{1,2}" if count == 1 and loose else f"{{{count}}}"
        parts.append(f"(?:{_char_class(ch)}{_BREAK}?){reps}")
    return "".join(parts)


def _inflections(word: str) -> tuple[dict[str, list[str]], bool]:
    """The regular English inflections of ``word``: {stem: [endings]}, and whether the word's own
    last letter may double before its endings (a single final consonant: stab, stabbed)."""
    plain = word.replace(AMBIGUOUS_IL, "i")     # the rules look at letters; "I" in an entry is an i
    last, before = plain[-1:], plain[-2:-1]
    if last == "y" and before and before not in _VOWELS:
        return {word[:-1]: ["ies", "ied"], word: ["ing"]}, False
    endings: dict[str, list[str]] = {word: []}
    if plain.endswith(("s", "x", "z", "ch", "sh", "o")):
        endings[word].append("es")
    if not plain.endswith(("s", "x", "z", "ch", "sh")):
        endings[word].append("s")
    endings[word].append("d" if last == "e" else "ed")
    if plain.endswith("ie"):
        endings[word[:-2]] = ["ying"]
    elif last == "e" and before not in ("e", "o", "y"):
        endings[word[:-1]] = ["ing"]
    else:
        endings[word].append("ing")
    single_consonant = last.isalpha() and last not in _VOWELS + "wxy" and before != last
    return endings, single_consonant


def _words(text: str, form: Form) -> list[str]:
    return [w for w in _SEP_RUN.split(_STRETCHED.sub(r"\1\1", form(text))) if w]


def entry_pattern(entry: Entry, form: Form = canonical) -> str | None:
    """A regular expression for one list entry in one reading, or None when nothing of it is left.

    The entry's start must also be a word start unless it matches ``anywhere``: TermMatcher adds
    that once for all such entries.
    """
    words = _words(entry.text, form)
    if not words:
        return None
    head = "".join(f"{_spelled(w)}{_SEP}*" for w in words[:-1])
    last = words[-1]
    if entry.inflects:
        endings, double = _inflections(last)
        variants = [_spelled(last)] + [
            _spelled(stem, stretch="vowels", double_last=double and stem == last)
            + f"(?:{'|'.join(_spelled(e, stretch='none') for e in ends)})"
            for stem, ends in endings.items() if stem]
        tail = f"(?:{'|'.join(variants)})"
    else:
        tail = _spelled(last)
    end = "" if entry.prefix or entry.anywhere else f"(?!{_WORD})"
    return f"{head}{tail}{end}"


class _Alternation:
    """All entries' patterns in one reading compiled into one expression: group g is rules[g - 1].

    Entries are grouped by their first letter behind a lookahead for it, so at each position the
    engine tries only the entries that can start there: with 1,000 entries a 250-character prompt
    took 44 ms through one flat alternation, 3 ms grouped. Compiling those 1,000 entries with
    their inflections takes about 2.4 s, once, when the policy loads.
    """

    def __init__(self, entries: Sequence[tuple[int, Entry]], form: Form) -> None:
        self.form = form
        bounded: dict[str, list[tuple[int, Entry, str]]] = {}
        anywhere: dict[str, list[tuple[int, Entry, str]]] = {}
        for index, entry in entries:
            words = _words(entry.text, form)
            if not words:
                continue
            group = anywhere if entry.anywhere else bounded
            group.setdefault(words[0][0], []).append((index, entry, entry_pattern(entry, form)))
        self.rules: list[int] = []          # group - 1 -> the entry's index in the list
        self.has_digit: list[bool] = []     # group - 1 -> whether the entry is spelled with digits
        branches = []
        for by_letter, boundary in ((bounded, rf"(?<!{_WORD})"), (anywhere, "")):
            if not by_letter:
                continue
            alternatives = []
            for letter, compiled in by_letter.items():
                alternatives.append(f"(?={_char_class(letter)})(?:{'|'.join(f'({p})' for _, _, p in compiled)})")
                self.rules += [index for index, _, _ in compiled]
                self.has_digit += [any(c.isdigit() for c in form(entry.text)) for _, entry, _ in compiled]
            # A bounded entry must start a word: asked once per position, not once per entry.
            branches.append(f"{boundary}(?:{'|'.join(alternatives)})")
        self.regex = re.compile("|".join(branches)) if branches else None

    def find(self, prompt: str) -> int | None:
        if self.regex is None:
            return None
        for reading in readings(prompt, self.form):
            pos = 0
            while (m := self.regex.search(reading, pos)) is not None:
                rule = m.lastindex - 1
                if self.has_digit[rule] or not _starts_with_number(m.group()):
                    return self.rules[rule]
                pos = m.start() + 1             # a year or a count, not leetspeak: look further on
        return None


def _starts_with_number(matched: str) -> bool:
    """Whether a match's first word is a plain number ("455", "1850s", "19th", "1 8 5 0 s").

    Such a match read digits as letters, which an entry spelled without digits must not do:
    "455" is a count, not "ass". Only digits and a decade or ordinal suffix count as a number,
    so "8!tch" and "4$$" (digits mixed with symbols that stand for letters) are still caught.
    """
    first = _SEP_RUN.split(matched.replace(UNIT_BREAK, ""), maxsplit=1)[0]
    return _NUMBER.fullmatch(first) is not None


class TermMatcher:
    """All list entries compiled once when the policy loads: one expression on the look-alike
    reading, and one on the own-script reading for entries that are not plain ASCII."""

    def __init__(self, terms: Sequence[str]):
        """Raises ValueError naming the entry's number (never its text) for a malformed entry."""
        entries = []
        for i, term in enumerate(terms):
            try:
                entries.append((i, Entry.parse(term)))
            except ValueError as exc:
                raise ValueError(f"entry {i + 1}: {exc}") from None
        self._lookalike = _Alternation(entries, canonical)
        self._own_script = _Alternation([(i, e) for i, e in entries if not e.text.isascii()], in_own_script)
        self._count = len(set(self._lookalike.rules) | set(self._own_script.rules))

    def __len__(self) -> int:
        return self._count

    def find(self, prompt: str) -> int | None:
        """Index (in the entries given) of a blocked entry the prompt contains, or None."""
        found = self._lookalike.find(prompt)
        return found if found is not None else self._own_script.find(prompt)
