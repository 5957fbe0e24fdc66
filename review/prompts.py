"""Probe prompts: the default set shipped with the package, and a curator's own file.

One format for both (the shipped ``review/data/probes.txt`` is an example of it)::

    # comments and blank lines are ignored
    [Part]                      the prompts below belong to this part of the report
    [Part] -- note              with a note shown at the top of the part
    category: prompt            a prompt in a category ("category:" is optional)
    category: prompt -- note    with a note on what a curator should look for
    category: -- note           a note for the whole category

``--prompts FILE`` replaces the default set; ``--prompts +FILE`` keeps it and adds FILE's prompts.
A category is the text before the first ``: `` when it is a short name (letters, digits, spaces,
``()'&,.-``, at most 40 characters), so ``places: Jerusalem: the temple`` is the prompt
"Jerusalem: the temple" in the category "places".
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from search_core.errors import ImageSearchError, QueryError
from search_core.listfile import read_numbered
from search_core.search import check_prompt

log = logging.getLogger(__name__)

DEFAULT_RESOURCE = "data/probes.txt"
ADD_PREFIX = "+"
OWN_PART = "Your prompts"
NO_CATEGORY = "General"
NOTE_SEPARATOR = "--"
# A report of this many prompts is already a long read; more is a wrong file, not a review.
MAX_PROMPTS = 1000

_PART = re.compile(r"^\[(?P<name>[^\[\]]{1,80})\](?:\s+--\s+(?P<note>.*))?$")
_CATEGORY = re.compile(r"^(?P<category>[^\W_][\w ()'&,.-]{0,39}):(?:\s+|$)(?P<rest>.*)$")


class PromptsError(ImageSearchError):
    """A prompts file cannot be read or holds a line that is not a usable prompt."""


@dataclass(frozen=True)
class Probe:
    """One prompt of the report, with where it sits in the table of contents."""

    text: str
    category: str
    part: str
    note: str = ""


@dataclass(frozen=True)
class ProbeSet:
    """Prompts in file order, and the notes written for whole categories and parts."""

    probes: tuple[Probe, ...]
    category_notes: dict[str, str] = field(default_factory=dict)
    part_notes: dict[str, str] = field(default_factory=dict)

    def __add__(self, other: ProbeSet) -> ProbeSet:
        seen = {p.text.casefold() for p in self.probes}
        extra = tuple(p for p in other.probes if p.text.casefold() not in seen)
        return ProbeSet(self.probes + extra, {**self.category_notes, **other.category_notes},
                        {**self.part_notes, **other.part_notes})


def load_probes(spec: str | None) -> ProbeSet:
    """The prompts a review runs: None = the default set, "FILE" = FILE's, "+FILE" = both."""
    if spec is None:
        return default_probes()
    if spec.startswith(ADD_PREFIX):
        path = spec[len(ADD_PREFIX):]
        if not path:
            raise PromptsError("--prompts +FILE needs a file name after the +.")
        probes = default_probes() + read_probes(Path(path))
    else:
        probes = read_probes(Path(spec))
    if len(probes.probes) > MAX_PROMPTS:
        raise PromptsError(f"The review runs at most {MAX_PROMPTS} prompts; this one has {len(probes.probes)}.")
    return probes


def default_probes() -> ProbeSet:
    """The shipped set: everyday prompts for historical illustrations, then sensitive probes."""
    resource = resources.files("review").joinpath(DEFAULT_RESOURCE)
    with resources.as_file(resource) as path:
        return read_probes(path, what="The default prompts file", default_part="Everyday prompts")


def read_probes(path: Path, *, what: str = "Prompts file", default_part: str = OWN_PART) -> ProbeSet:
    """Parse a prompts file; PromptsError names the file and line of the first bad entry."""
    lines = read_numbered(path, what=what, error=PromptsError)
    probes: list[Probe] = []
    notes: dict[str, str] = {}
    part_notes: dict[str, str] = {}
    seen: set[str] = set()
    part = default_part
    for number, line in lines:
        where = f"{what} {path}, line {number}"
        heading = _PART.match(line)
        if heading:
            part = heading["name"].strip()
            if heading["note"]:
                part_notes[part] = heading["note"].strip()
            continue
        category, rest = _split_category(line)
        text, note = _split_note(rest)
        if not text:
            if category is None or not note:
                raise PromptsError(f"{where}: no prompt (write 'category: prompt' or 'category: -- note').")
            notes[category] = note
            continue
        try:
            text = check_prompt(text)
        except QueryError as exc:
            raise PromptsError(f"{where}: {exc}") from None
        if text.casefold() in seen:
            log.info("%s: a repeated prompt, kept once", where)
            continue
        seen.add(text.casefold())
        probes.append(Probe(text=text, category=category or NO_CATEGORY, part=part, note=note))
    if not probes:
        raise PromptsError(f"{what} {path} holds no prompts (only blank lines, comments or notes).")
    return ProbeSet(tuple(probes), notes, part_notes)


def _split_category(line: str) -> tuple[str | None, str]:
    match = _CATEGORY.match(line)
    if match is None:
        return None, line
    return " ".join(match["category"].split()), match["rest"].strip()


def _split_note(rest: str) -> tuple[str, str]:
    """("prompt", "note") from "prompt -- note"; a rest starting with "--" is a note alone."""
    if rest.startswith(NOTE_SEPARATOR):
        return "", rest[len(NOTE_SEPARATOR):].strip()
    text, sep, note = rest.partition(f" {NOTE_SEPARATOR} ")
    return text.strip(), note.strip() if sep else ""
