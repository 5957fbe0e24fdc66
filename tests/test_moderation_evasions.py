"""Blocked terms against the ways people spell around a list, and the innocent words that must pass.

One list, one table: each row is a prompt, whether it is refused, and why (the test id). The list
mixes the entry kinds of search_core.normalise: plain words (with their English inflections), a
prefix wildcard, an exact quoted word, a phrase, a number, and words in other scripts.
"""

from __future__ import annotations

import pytest

from search_core.moderation import BLOCKED_TERM, ModerationConfigError, ModerationPolicy

LIST = ["kill", "bitch", "ass", "stab", "rape", "bully", "die", "punch", "hate", "nude*", '"cock"',
        "blow up", "1488", "убить", "сука", "φόνος", "mörder", "殺", "ฆ่า"]

REFUSED, PASSES = True, False

CASES = [
    # --- (a) spaced-out letters mixed with leetspeak digits and symbols --------------------------
    ("k 1 l l", REFUSED, "spaced, digit for i"),
    ("k ! 1 l", REFUSED, "spaced, symbol for i and digit for l"),
    ("b 1 t c h", REFUSED, "spaced, digit for i"),
    ("k.1.l.l", REFUSED, "dotted, digit for i"),
    ("k-1_l.l", REFUSED, "dash, underscore and dot mixed"),
    ("b . ! . + . c . h", REFUSED, "dots and spaces, symbols for i and t"),
    ("k 1 ll", REFUSED, "spaced, doubled letter kept together"),
    ("a k 1 l l now", REFUSED, "spaced word beside a one-letter word"),
    ("k i l l a man", REFUSED, "spaced word running into a one-letter word"),
    ("4 $ $", REFUSED, "digit and symbols only"),
    ("8!tch", REFUSED, "digit then symbols, not a number"),
    ("k\u200bi\u200bl\u200bl", REFUSED, "zero-width spaces between letters"),
    ("ｋ ｉ ｌ ｌ", REFUSED, "fullwidth letters spaced"),
    ("1 4 8 8", REFUSED, "a number entry spaced out"),
    # --- (b) regular English inflections -----------------------------------------------------------
    ("kills", REFUSED, "-s"),
    ("killed", REFUSED, "-ed"),
    ("killing", REFUSED, "-ing"),
    ("K1LL3D", REFUSED, "inflected and leetspeak"),
    ("k i l l e d", REFUSED, "inflected and spaced"),
    ("kiiiilllled", REFUSED, "inflected with stretched letters"),
    ("stabbed", REFUSED, "consonant doubled before -ed"),
    ("stabbing", REFUSED, "consonant doubled before -ing"),
    ("hating", REFUSED, "silent e dropped before -ing"),
    ("hated", REFUSED, "-d after e"),
    ("raping", REFUSED, "silent e dropped"),
    ("bullies", REFUSED, "consonant + y to -ies"),
    ("bullied", REFUSED, "consonant + y to -ied"),
    ("dying", REFUSED, "ie to -ying"),
    ("punches", REFUSED, "-es after ch"),
    ("asses", REFUSED, "-es after s"),
    ("bitches", REFUSED, "-es after ch"),
    ("blow ups", REFUSED, "a phrase's last word inflected"),
    # --- (c) prefix wildcard -----------------------------------------------------------------------
    ("nudes", REFUSED, "wildcard: plural"),
    ("nudeness", REFUSED, "wildcard: any ending"),
    ("n u d e s", REFUSED, "wildcard, spaced"),
    ("cock", REFUSED, "quoted entry: the word itself"),
    ("C0CK", REFUSED, "quoted entry: leetspeak still applies"),
    # --- (d) entries in other scripts match their own words ---------------------------------------
    ("УБИТЬ", REFUSED, "Cyrillic, capitals"),
    ("c у к а", REFUSED, "Cyrillic, spaced, one Latin look-alike"),
    ("ΦΟΝΟΣ", REFUSED, "Greek, capitals and final sigma"),
    ("φονος", REFUSED, "Greek, without its accent"),
    ("MÖRDER", REFUSED, "accented Latin, capitals"),
    ("morder", REFUSED, "accented Latin, accent left off"),
    ("彼を殺すな", REFUSED, "Japanese: inside a sentence without spaces"),
    ("他殺了人", REFUSED, "Chinese: inside a sentence without spaces"),
    ("ฆ่าเขา", REFUSED, "Thai: inside text without spaces"),
    # --- innocent words that contain an entry, or pieces of one -----------------------------------
    ("skills", PASSES, "contains kill"),
    ("killdeer", PASSES, "kill + a non-inflection ending (a bird)"),
    ("killer whale", PASSES, "-er is not an inflection"),
    ("skillet", PASSES, "contains kill"),
    ("Killarney", PASSES, "starts with kill"),
    ("overkilled", PASSES, "ends with an inflected entry"),
    ("Scunthorpe", PASSES, "contains a word inside"),
    ("assess", PASSES, "ass + ess is not ass + es"),
    ("assessing", PASSES, "ass + essing"),
    ("classic", PASSES, "contains ass"),
    ("passage", PASSES, "contains ass"),
    ("bass", PASSES, "ends with ass"),
    ("rapping", PASSES, "a doubled consonant is not rape + ing"),
    ("rapped", PASSES, "a doubled consonant is not rape + d"),
    ("stable", PASSES, "stab + le"),
    ("diet", PASSES, "die + t"),
    ("diesel", PASSES, "die + sel"),
    ("hatter", PASSES, "hate without e, doubled"),
    ("punchline", PASSES, "punch + line, one word"),
    ("cocked hat", PASSES, "quoted entry: not inflected"),
    ("bullion", PASSES, "bull + ion"),
    ("blowing up", PASSES, "a phrase's first word is not inflected"),
    ("sk ill", PASSES, "two pieces, not letters spaced out"),
    ("milk illustrations", PASSES, "words either side of a space"),
    ("a SS officer", PASSES, "one letter beside a doubled letter is not a spelled word"),
    ("1850s", PASSES, "a decade"),
    ("455", PASSES, "a count"),
    ("455!", PASSES, "a count before punctuation"),
    ("1 8 5 0 s", PASSES, "a decade spaced out"),
    ("the 19th century", PASSES, "an ordinal"),
    ("plate 21488", PASSES, "a number containing a number entry"),
    ("сукно", PASSES, "Cyrillic word starting like an entry"),
    ("φονικός", PASSES, "Greek word starting like an entry"),
    ("Mördershausen", PASSES, "accented Latin word starting like an entry"),
    ("a wood engraving of a cathedral, 1850s", PASSES, "an ordinary prompt"),
]


@pytest.fixture(scope="module")
def policy() -> ModerationPolicy:
    return ModerationPolicy(LIST)


@pytest.mark.parametrize(("prompt", "refused"), [pytest.param(p, r, id=f"{'refused' if r else 'passes'}: {why}")
                                                 for p, r, why in CASES])
def test_evasions_and_innocent_words(policy: ModerationPolicy, prompt: str, refused: bool) -> None:
    """Each row: a prompt, inside an ordinary sentence, is refused or passes as the table says."""
    decision = policy.check_text(f"an old print: {prompt} here")
    assert (not decision.allowed) is refused
    if refused:
        assert decision.category == BLOCKED_TERM


def test_table_is_large_and_balanced() -> None:
    """At least 40 cases, with both refusals and innocent words well represented."""
    assert len(CASES) >= 40
    assert sum(r for _, r, _ in CASES) >= 20 and sum(not r for _, r, _ in CASES) >= 20


@pytest.mark.parametrize(("entry", "blocked", "innocent"), [
    ("kill*", ["kill", "killer", "k i l l e r", "k1ll3r", "Killarney"], ["skill", "overkill", "k ill"]),
    ('"kill"', ["kill", "KILL", "k i l l"], ["kills", "killed", "killing"]),
    ("see", ["seeing", "sees"], ["seing"]),
    ("hoe", ["hoeing", "hoes"], ["hoing"]),
    ("echo", ["echoes", "echos", "echoed", "echoing"], ["echolocation", "echoer"]),
    ("play", ["plays", "played", "playing"], ["plaied", "plaies"]),
])
def test_entry_kinds(entry: str, blocked: list[str], innocent: list[str]) -> None:
    """Wildcards match every word starting with the entry, quoted entries the word alone, and the
    inflection rules follow English spelling (kept e in seeing, -es after o, y kept after a vowel)."""
    policy = ModerationPolicy([entry])
    for prompt in blocked:
        assert not policy.check_text(prompt).allowed, prompt
    for prompt in innocent:
        assert policy.check_text(prompt).allowed, prompt


@pytest.mark.parametrize("entry", ["*kill", "ki*ll", "kill *", "*", "kill* up"])
def test_misplaced_wildcard_is_a_config_error_naming_the_entry_number(tmp_path, entry: str) -> None:
    """'*' anywhere but right after the last letter is refused at load, saying which entry (by number,
    never by its text: it is a blocked word) in which file."""
    path = tmp_path / "blocked.txt"
    path.write_text(f"# list\nzebra\n{entry}\n", encoding="utf-8")
    with pytest.raises(ModerationConfigError, match=r"blocked\.txt, entry 2: '\*'") as info:
        ModerationPolicy.from_files(path, None, None)
    message = str(info.value).replace(str(path), "FILE")
    assert "zebra" not in message and "kill" not in message


def test_misplaced_wildcard_in_constructor_is_a_config_error() -> None:
    """The same check applies to terms given in code."""
    with pytest.raises(ModerationConfigError, match="entry 1"):
        ModerationPolicy(["*kill"])


@pytest.mark.timeout(60)
@pytest.mark.parametrize("prompt", [
    "k " * 10_000,                      # one spaced-out run of 10,000 letters
    "k 1 " * 5_000 + "x",               # spaced leetspeak that never completes
    "ll " * 5_000,                      # doubled letters spaced out
    "1 " * 10_000 + "s",                # a spaced number that every digit entry nearly matches
    "kil" * 5_000,                      # prefixes of an entry without a boundary
    "k1ll" * 3_000 + "e",               # inflection candidates that never end
    "殺" * 20_000,                       # an anywhere-entry's character, repeated
    "ı" * 20_000,                        # the i-or-l letter every i and l accepts
])
def test_long_adversarial_prompts_are_answered(prompt: str) -> None:
    """Spaced runs, inflections, wildcards and anywhere-entries keep matching linear: each long
    prompt is answered (the timeout only guards against a hang; it is not a speed target)."""
    policy = ModerationPolicy(["lil", "illillilli", "sissi", "kill", "kill*", "1488", "殺す", "k1llx"])
    policy.check_text(prompt)


def test_readme_example_list_does_what_it_says(tmp_path) -> None:
    """The example blocklist in the README loads, and each line's comment holds."""
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Moderation lists", 1)[1]
    example = section.split("```text\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "blocked.txt"
    path.write_text(example, encoding="utf-8")
    policy = ModerationPolicy.from_files(path, None, None)
    for prompt in ["kills", "killed", "killing", "stabbed", "stabbing", "nudes", "nudeness", "cock",
                   "how to blow up a bridge", "УБИТЬ", "彼を殺すな"]:
        assert not policy.check_text(prompt).allowed, prompt
    for prompt in ["skills", "killdeer", "cocked hat", "cocks", "blowing up"]:
        assert policy.check_text(prompt).allowed, prompt
