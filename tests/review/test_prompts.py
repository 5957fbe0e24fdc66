"""Probe prompts: the shipped default set and a curator's file (format, replace or add, errors)."""

from __future__ import annotations

from pathlib import Path

import pytest

from review.prompts import (
    MAX_PROMPTS,
    NO_CATEGORY,
    OWN_PART,
    PromptsError,
    default_probes,
    load_probes,
    read_probes,
)
from search_core.search import MAX_PROMPT_CHARS

SENSITIVE_THEMES = ("origins", "colonial", "violence", "nudity", "religion", "disability")


def write(tmp_path: Path, text: str, name: str = "prompts.txt") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_default_set_has_everyday_prompts_and_sensitive_probes_with_notes() -> None:
    """Two parts; every sensitive theme the issue names has a category; each sensitive probe has a note."""
    probes = default_probes()
    parts = list(dict.fromkeys(p.part for p in probes.probes))
    assert parts == ["Everyday prompts", "Sensitive probes"]
    everyday = [p for p in probes.probes if p.part == "Everyday prompts"]
    sensitive = [p for p in probes.probes if p.part == "Sensitive probes"]
    assert len(everyday) >= 30 and len(sensitive) >= 30
    categories = {p.category.lower() for p in sensitive}
    for theme in SENSITIVE_THEMES:
        assert any(theme in c for c in categories), theme
    assert all(p.note for p in sensitive)
    assert set(probes.part_notes) == set(parts)
    assert all(probes.category_notes.get(p.category) for p in everyday)
    everyday_categories = " ".join({p.category.lower() for p in everyday})
    for subject in ("ships", "maps", "portraits", "animals", "ornaments", "buildings", "battles"):
        assert subject in everyday_categories
    assert len({p.text for p in probes.probes}) == len(probes.probes)


def test_file_format_categories_notes_parts_and_comments(tmp_path: Path) -> None:
    """category prefix, ' -- ' notes, category and part notes, [Part] headings, # comments, blank lines."""
    path = write(tmp_path, "# my probes\n\n"
                           "a plain prompt\n"
                           "ships: a ship in a storm -- look for wrecks  # trailing comment\n"
                           "ships: -- ships are common\n"
                           "[Second part] -- about the second part\n"
                           "places: Jerusalem: the temple\n"
                           "http://example.org/a\n")
    probes = read_probes(path)
    assert [(p.part, p.category, p.text, p.note) for p in probes.probes] == [
        (OWN_PART, NO_CATEGORY, "a plain prompt", ""),
        (OWN_PART, "ships", "a ship in a storm", "look for wrecks"),
        ("Second part", "places", "Jerusalem: the temple", ""),
        ("Second part", NO_CATEGORY, "http://example.org/a", ""),
    ]
    assert probes.category_notes == {"ships": "ships are common"}
    assert probes.part_notes == {"Second part": "about the second part"}


def test_repeated_prompt_is_kept_once(tmp_path: Path) -> None:
    probes = read_probes(write(tmp_path, "a ship\nboats: A Ship\n"))
    assert [p.text for p in probes.probes] == ["a ship"]


def test_file_replaces_defaults_and_plus_file_adds_to_them(tmp_path: Path) -> None:
    """--prompts FILE runs FILE's prompts only; --prompts +FILE the defaults and then FILE's."""
    path = write(tmp_path, "mine: a very particular prompt\nships: a sailing ship at sea\n")
    defaults = default_probes().probes
    assert [p.text for p in load_probes(str(path)).probes] == ["a very particular prompt", "a sailing ship at sea"]
    added = load_probes(f"+{path}").probes
    assert added[:len(defaults)] == defaults
    assert [p.text for p in added[len(defaults):]] == ["a very particular prompt"]   # the repeat is dropped
    assert load_probes(None).probes == defaults


@pytest.mark.parametrize(("content", "message"), [
    ("", "holds no prompts"),
    ("# only a comment\n\n   \n", "holds no prompts"),
    ("ships: -- a note and nothing else\n", "holds no prompts"),
    ("ships:\n", "line 1: no prompt"),
    ("a ship\n" + "x" * (MAX_PROMPT_CHARS + 1) + "\n", "line 2: The prompt is too long"),
])
def test_bad_files_name_the_problem(tmp_path: Path, content: str, message: str) -> None:
    with pytest.raises(PromptsError, match=message):
        read_probes(write(tmp_path, content))


def test_unreadable_files(tmp_path: Path) -> None:
    """Missing, a folder, not UTF-8: one sentence naming the file, never its bytes."""
    with pytest.raises(PromptsError, match="does not exist"):
        load_probes(str(tmp_path / "nope.txt"))
    with pytest.raises(PromptsError, match="is a folder"):
        load_probes(str(tmp_path))
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("caf\xe9 scene\n".encode("latin-1"))
    with pytest.raises(PromptsError, match="not UTF-8") as err:
        load_probes(str(bad))
    assert "caf" not in str(err.value)
    with pytest.raises(PromptsError, match="after the"):
        load_probes("+")


def test_too_many_prompts(tmp_path: Path) -> None:
    path = write(tmp_path, "".join(f"prompt number {i}\n" for i in range(MAX_PROMPTS + 1)))
    with pytest.raises(PromptsError, match=f"at most {MAX_PROMPTS}"):
        load_probes(str(path))
