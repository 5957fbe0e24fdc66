"""The moderation policy: blocked terms however spelled, blocked concepts by meaning, list files."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from search_core.errors import ImageSearchError, ModelMismatchError
from search_core.moderation import (
    BLOCKED_CONCEPT,
    BLOCKED_TERM,
    DEFAULT_CONCEPT_CATEGORY,
    IMAGE_CONCEPT_MESSAGE,
    TEXT_CONCEPT_MESSAGE,
    ModerationConfigError,
    ModerationPolicy,
    parse_concept,
    read_list,
)
from tests.fixtures.images import draw_image

TERMS = ["kill", "blow up", "ass"]
CONCEPT = "a burning ship at sea"
UNRELATED = ["portrait of a lady with a fan", "map of london", "wood engraving of a cathedral",
             "birds of paradise"]


@pytest.fixture(scope="module")
def encoder(tiny_clip: Path):
    from search_core.encoder import Encoder

    return Encoder.load(str(tiny_clip), device="cpu")


@pytest.fixture(scope="module")
def policy() -> ModerationPolicy:
    return ModerationPolicy(TERMS)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --- Blocked terms -------------------------------------------------------------------------------

def test_blocked_term_is_refused(policy):
    """A prompt containing a listed word is refused as a blocked term."""
    decision = policy.check_text("a picture of someone about to kill a dragon")
    assert not decision.allowed
    assert decision.category == BLOCKED_TERM
    assert decision.message


def test_clean_prompt_is_allowed(policy):
    """An ordinary prompt passes with no category and no message."""
    decision = policy.check_text("a wood engraving of a cathedral, 1850s")
    assert decision.allowed and decision.category is None and decision.message == ""


@pytest.mark.parametrize("prompt", [
    pytest.param("KILL", id="case"),
    pytest.param("kíll", id="accent"),
    pytest.param("ki\u0300ll", id="combining-accent"),
    pytest.param("k\u0456ll", id="cyrillic-homoglyph"),
    pytest.param("\u03ba\u0399LL", id="greek-homoglyph"),
    pytest.param("kiII", id="capital-I-for-l"),
    pytest.param("\uff4b\uff49\uff4c\uff4c", id="fullwidth"),
    pytest.param("\U0001d424\U0001d422\U0001d425\U0001d425", id="math-bold"),
    pytest.param("\u24da\u24d8\u24db\u24db", id="circled"),
    pytest.param("\u1d4f\u2071\u02e1\u02e1", id="superscript"),
    pytest.param("k1ll", id="leet-digit"),
    pytest.param("k!ll", id="leet-symbol"),
    pytest.param("k i l l", id="spacing"),
    pytest.param("k.i.l.l", id="dots"),
    pytest.param("k-i-l-l", id="hyphens"),
    pytest.param("k_i_l_l", id="underscores"),
    pytest.param("ki.ll", id="punctuation-inside"),
    pytest.param("k\u200bi\u200cl\u200dl\u2060", id="zero-width"),
    pytest.param("k\u00adill", id="soft-hyphen"),
    pytest.param("kiiiilllll", id="repeated-letters"),
    pytest.param("K .i. I L-L", id="mixed"),
    pytest.param("kill!", id="trailing-punctuation"),
    pytest.param("kill-switch", id="hyphenated-compound"),
])
def test_evasion_is_refused(policy, prompt):
    """Each spelling trick (named in the test id) still matches the blocked term."""
    assert policy.check_text(f"a scene: {prompt} now").category == BLOCKED_TERM


@pytest.mark.parametrize("prompt", ["skills", "skillet", "Killarney", "overkilled", "sk ill",
                                    "milk illustrations", "k ill", "class", "passage", "Scunthorpe",
                                    "as", "45s records", "blow-dry", "blowing up"])
def test_innocent_word_containing_term_passes(policy, prompt):
    """A word that only contains a blocked term, or pieces of it, is not refused."""
    assert policy.check_text(prompt).allowed


@pytest.mark.parametrize("prompt", ["blow up", "BLOW UP", "blow-up", "blow   up", "blowup", "b l o w u p",
                                    "bl0w_up", "blow\u200b up"])
def test_phrase_matches_across_separators(policy, prompt):
    """A two-word phrase is refused whatever separates (or does not separate) its words."""
    assert policy.check_text(f"how to {prompt} the bridge").category == BLOCKED_TERM


def test_phrase_words_apart_pass(policy):
    """The words of a phrase with other words between them are not the phrase."""
    assert policy.check_text("blow the dust up").allowed


@pytest.mark.parametrize("prompt", ["1855 map", "55 engravings", "1850s", "19th century"])
def test_numbers_are_not_read_as_leetspeak(prompt):
    """Years, counts and decades pass even when their digits spell a blocked term in leetspeak."""
    policy = ModerationPolicy(["ss", "ass", "bss"])
    assert policy.check_text(prompt).allowed


@pytest.mark.parametrize("prompt", ["8!tch", "8 ! t c h"])
def test_leading_digit_then_leet_symbols_is_refused(prompt):
    """A digit standing for the first letter, followed by symbols for letters, is not a number."""
    assert ModerationPolicy(["bitch"]).check_text(f"the {prompt} here").category == BLOCKED_TERM


@pytest.mark.parametrize("prompt", ["4$$", "4 $ $"])
def test_digit_then_only_leet_symbols_is_refused(prompt):
    """A word of one digit and symbols standing for letters ("4$$") is leetspeak, not a number."""
    assert ModerationPolicy(["ass"]).check_text(f"the {prompt} here").category == BLOCKED_TERM


@pytest.mark.parametrize("prompt", ["455!", "1855!", "in 1855, a map", "the 19th!", "(455)"])
def test_numbers_before_punctuation_are_not_read_as_leetspeak(prompt):
    """A number followed by punctuation that is also a leetspeak symbol is still just a number."""
    policy = ModerationPolicy(["ss", "ass", "bss"])
    assert policy.check_text(prompt).allowed


def test_number_does_not_hide_a_later_blocked_term():
    """Skipping a number read as leetspeak goes on to find a blocked term later in the prompt."""
    assert ModerationPolicy(["ass"]).check_text("455 and 4$$").category == BLOCKED_TERM


def test_term_with_digits_matches_itself():
    """A list entry that is a number is matched as that number, on word boundaries."""
    policy = ModerationPolicy(["1488"])
    assert policy.check_text("poster 1488").category == BLOCKED_TERM
    assert policy.check_text("plate 21488").allowed


def test_refusal_message_never_repeats_term_or_prompt(policy):
    """The message is general: neither the blocked term nor any part of the prompt appears in it."""
    prompt = "k1ll zebra"
    message = policy.check_text(prompt).message.casefold()
    assert message
    for word in ["kill", "k1ll", "zebra", *TERMS]:
        assert word not in message


# --- List files ----------------------------------------------------------------------------------

def test_list_file_skips_comments_and_blank_lines(tmp_path):
    """Whole-line and trailing comments and blank lines are not entries; entries are stripped."""
    path = write(tmp_path, "blocked.txt",
                 "# violence\n\n  kill  \nblow up   # phrase\n\t\n#ass\n")
    assert read_list(path) == ["kill", "blow up"]


def test_policy_from_files_blocks_listed_terms_only(tmp_path):
    """A term listed in the file is refused; one that is commented out is not."""
    path = write(tmp_path, "blocked.txt", "\ufeff# header\nkill\n# ass\n")
    policy = ModerationPolicy.from_files(path, None, None)
    assert policy.check_text("kill").category == BLOCKED_TERM
    assert policy.check_text("ass").allowed


def test_missing_file_gives_clear_error(tmp_path):
    """A list that does not exist raises an ImageSearchError naming the file."""
    path = tmp_path / "nope.txt"
    with pytest.raises(ImageSearchError, match="nope.txt"):
        ModerationPolicy.from_files(path, None, None)


def test_non_utf8_file_error_names_file_not_content(tmp_path):
    """A list in another encoding raises an error that names the file and quotes none of it."""
    path = tmp_path / "latin1.txt"
    path.write_bytes("caf\u00e9 secretword\n".encode("latin-1"))
    with pytest.raises(ModerationConfigError) as info:
        ModerationPolicy.from_files(path, None, None)
    assert "latin1.txt" in str(info.value)
    assert "secretword" not in str(info.value) and "caf" not in str(info.value)


def test_path_through_a_file_gives_clear_error(tmp_path):
    """A list path that runs through a file (an OS error other than not-found) is a clear error."""
    parent = write(tmp_path, "plain.txt", "kill\n")
    with pytest.raises(ModerationConfigError, match="blocked.txt"):
        ModerationPolicy.from_files(parent / "blocked.txt", None, None)


def test_unreadable_file_gives_clear_error(tmp_path, monkeypatch):
    """A list the process may not read raises an ImageSearchError naming the file.

    The denial is simulated: tests often run as root (CI does), which reads files whatever their
    permissions, so a chmod-based test would never run there."""
    path = write(tmp_path, "secret.txt", "kill\n")

    def denied(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(type(path), "read_text", denied)
    with pytest.raises(ModerationConfigError, match="secret.txt.*permission denied"):
        ModerationPolicy.from_files(path, None, None)


def test_folder_instead_of_file_gives_clear_error(tmp_path):
    """A folder given as a list raises an ImageSearchError naming it."""
    folder = tmp_path / "lists"
    folder.mkdir()
    with pytest.raises(ModerationConfigError, match="lists"):
        ModerationPolicy.from_files(folder, None, None)


def test_concepts_without_model_give_clear_error(tmp_path):
    """A concept list cannot be used without the model that embeds it: a clear error, not a crash."""
    path = write(tmp_path, "concepts.txt", "a burning ship\n")
    with pytest.raises(ModerationConfigError, match="concepts.txt"):
        ModerationPolicy.from_files(None, path, None)


def test_policy_without_files_allows_everything():
    """With no lists, every prompt and vector is allowed."""
    policy = ModerationPolicy.from_files(None, None, None)
    vec = np.ones(32, dtype=np.float32)
    assert policy.check("kill", text_vector=vec, image_vector=vec).allowed
    assert not policy.has_concepts


# --- Blocked concepts (tiny random CLIP) ---------------------------------------------------------

def _calibrated(concept_score: float, other_scores: list[float]) -> float:
    """A threshold halfway between the concept's own match and the closest unrelated input.

    Random weights give no meaningful similarities, so the threshold comes from what this model
    measured, and the test first checks there is a gap to put it in.
    """
    closest_other = max(other_scores)
    assert concept_score - closest_other > 0.1, (concept_score, other_scores)
    return (concept_score + closest_other) / 2


def test_blocked_concept_refuses_text_prompt_by_meaning(tmp_path, encoder):
    """The concept phrase re-cased and re-spaced is refused; unrelated prompts pass."""
    variant = "  A Burning  SHIP at Sea "
    vecs = encoder.encode_text([CONCEPT, variant, *UNRELATED])
    scores = vecs[1:] @ vecs[0]
    threshold = _calibrated(float(scores[0]), [float(s) for s in scores[1:]])
    path = write(tmp_path, "concepts.txt", f"# subjects\n{CONCEPT}\n")
    policy = ModerationPolicy.from_files(None, path, encoder, text_threshold=threshold)

    decision = policy.check_vector(vecs[1], kind="text")
    assert decision.category == BLOCKED_CONCEPT and not decision.allowed
    for vec in vecs[2:]:
        assert policy.check_vector(vec, kind="text").allowed


def test_blocked_concept_refuses_image_by_meaning(encoder):
    """An image closest to a concept phrase is refused under the image threshold; the farthest passes."""
    images = encoder.encode_images([draw_image(seed) for seed in range(8)])
    concept_vec = encoder.encode_text([CONCEPT])
    scores = images @ concept_vec[0]
    near, far = int(np.argmax(scores)), int(np.argmin(scores))
    threshold = _calibrated(float(scores[near]), [float(scores[far])])
    policy = ModerationPolicy(concept_vectors=concept_vec, image_threshold=threshold, text_threshold=0.999)

    assert policy.check_vector(images[near], kind="image").category == BLOCKED_CONCEPT
    assert policy.check_vector(images[far], kind="image").allowed
    # The same vector asked as text meets the text threshold instead, which it does not reach.
    assert policy.check_vector(images[near], kind="text").allowed


def test_concept_refusal_message_never_repeats_concept(encoder):
    """A concept refusal, for a prompt or an image, names no word of the concept phrase or prompt."""
    policy = ModerationPolicy.from_phrases(concepts=[CONCEPT], encoder=encoder)
    vec = encoder.encode_text([CONCEPT])[0]
    for kind in ("text", "image"):
        decision = policy.check_vector(vec, kind=kind)
        assert decision.category == BLOCKED_CONCEPT
        message_words = set(re.findall(r"\w+", decision.message.casefold()))
        assert not message_words & {"burning", "ship", "sea"}


def test_check_asks_terms_before_concepts():
    """check() reports a blocked term even when the vector would also be refused."""
    concept = np.eye(4, dtype=np.float32)[:1]
    policy = ModerationPolicy(["kill"], concept)
    assert policy.check("kill", text_vector=concept[0]).category == BLOCKED_TERM
    assert policy.check("a ship", text_vector=concept[0]).category == BLOCKED_CONCEPT
    assert policy.check("a ship", image_vector=concept[0]).category == BLOCKED_CONCEPT
    assert policy.check("a ship", text_vector=np.eye(4, dtype=np.float32)[1]).allowed


def test_vector_from_another_model_is_refused_clearly():
    """A query vector whose size differs from the concepts' raises ModelMismatchError."""
    policy = ModerationPolicy(concept_vectors=np.eye(4, dtype=np.float32)[:1])
    with pytest.raises(ModelMismatchError):
        policy.check_vector(np.ones(8, dtype=np.float32), kind="image")


@pytest.mark.timeout(20)
@pytest.mark.parametrize("prompt", ["1" * 5000 + "x", "l1" * 2500 + "x", "s$" * 2500 + "q"])
def test_long_ambiguous_prompt_is_answered(prompt):
    """A long run of characters that several letters accept is answered, not backtracked on for minutes.

    Regression: open-ended repeats on overlapping letter classes (i and l both accept 1) hung on
    "1" * 1000 + "x". The timeout only guards against a hang; it is not a speed target.
    """
    policy = ModerationPolicy(["lil", "illillilli", "sissi"])
    assert policy.check_text(prompt).allowed


@pytest.mark.parametrize("thresholds", [{"text_threshold": 1.5}, {"image_threshold": -2.0}])
def test_threshold_outside_cosine_range_is_a_config_error(thresholds):
    """A threshold no cosine can reach (or every cosine passes) is refused at load, not silently used."""
    with pytest.raises(ModerationConfigError, match="between -1 and 1"):
        ModerationPolicy(**thresholds)


# --- Concept categories and batch flags ----------------------------------------------------------

class RecordingEncoder:
    """Encodes each text to a one-hot vector by its position in `vocab`, and records what it was given."""

    def __init__(self, vocab: list[str]):
        self.vocab = vocab
        self.seen: list[str] = []

    def encode_text(self, texts: list[str]) -> np.ndarray:
        self.seen += texts
        return np.stack([np.eye(len(self.vocab), dtype=np.float32)[self.vocab.index(t)] for t in texts])


@pytest.mark.parametrize(("line", "expected"), [
    ("violence: a burning ship", ("violence", "a burning ship")),
    ("Self-harm :  a noose", ("self-harm", "a noose")),
    ("gore:a wound", ("gore", "a wound")),
    ("a burning ship", (DEFAULT_CONCEPT_CATEGORY, "a burning ship")),
    ("a map: london", (DEFAULT_CONCEPT_CATEGORY, "a map: london")),
    ("1850: a riot", (DEFAULT_CONCEPT_CATEGORY, "1850: a riot")),
])
def test_concept_line_category(line, expected):
    """A one-word label and a colon start a category; a phrase that only contains a colon keeps it."""
    assert parse_concept(line) == expected


def test_concept_refusal_carries_category_not_phrase(tmp_path):
    """Only the phrase is embedded; a refusal names the matched concept's category, and its message
    is the usual general sentence."""
    encoder = RecordingEncoder(["a burning ship", "a noose", "a cathedral"])
    path = write(tmp_path, "concepts.txt", "violence: a burning ship\nself-harm: a noose\n")
    policy = ModerationPolicy.from_files(None, path, encoder)
    assert encoder.seen == ["a burning ship", "a noose"]
    assert policy.concept_categories == ["violence", "self-harm"]
    ship, noose, cathedral = np.eye(3, dtype=np.float32)
    decision = policy.check_vector(noose, kind="image")
    assert (decision.category, decision.concept_category) == (BLOCKED_CONCEPT, "self-harm")
    assert decision.message == IMAGE_CONCEPT_MESSAGE
    assert policy.check_vector(ship, kind="text").concept_category == "violence"
    assert policy.check_vector(ship, kind="text").message == TEXT_CONCEPT_MESSAGE
    assert policy.check_vector(cathedral, kind="image").concept_category is None
    assert policy.check_text("anything").concept_category is None


def test_concept_without_category_is_uncategorised():
    """A concept line with no label is reported under DEFAULT_CONCEPT_CATEGORY."""
    policy = ModerationPolicy.from_phrases(concepts=["a cathedral"], encoder=RecordingEncoder(["a cathedral"]))
    assert policy.check_vector(np.ones(1), kind="image").concept_category == DEFAULT_CONCEPT_CATEGORY


def test_flag_vectors_agrees_with_check_vector_across_chunks(monkeypatch):
    """flag_vectors flags exactly the rows check_vector refuses, with their categories and scores,
    also when the batch spans several chunks (here chunks of 7 rows) and holds broken rows."""
    from search_core import moderation

    monkeypatch.setattr(moderation, "FLAG_CHUNK", 7)
    rng = np.random.default_rng(0)
    concepts = rng.standard_normal((3, 8)).astype(np.float32)
    policy = ModerationPolicy(concept_vectors=concepts, concept_categories=["violence", "gore", "violence"],
                              image_threshold=0.5)
    batch = rng.standard_normal((40, 8)).astype(np.float32)
    batch[[3, 17, 30]] = concepts[[0, 1, 2]] + 0.1 * rng.standard_normal((3, 8))
    batch[5] = 0.0
    batch[6] = np.nan
    flags = policy.flag_vectors(batch, kind="image")
    expected = []
    for i, vec in enumerate(batch):
        if i in (5, 6):
            continue
        decision = policy.check_vector(vec, kind="image")
        if not decision.allowed:
            expected.append((i, decision.concept_category))
    assert [(f.index, f.category) for f in flags] == expected
    assert {3: "violence", 17: "gore", 30: "violence"}.items() <= {f.index: f.category for f in flags}.items()
    assert all(f.score >= 0.5 for f in flags)


def test_flag_vectors_reads_a_memory_mapped_float16_array(tmp_path):
    """A collection's embeddings (memory-mapped, possibly float16) are scored without copying them whole."""
    concepts = np.eye(4, dtype=np.float32)
    policy = ModerationPolicy(concept_vectors=concepts, concept_categories=["a", "b", "c", "d"])
    path = tmp_path / "emb.npy"
    np.save(path, np.eye(4, dtype=np.float16)[[1, 1, 3]])
    flags = policy.flag_vectors(np.load(path, mmap_mode="r"))
    assert [(f.index, f.category) for f in flags] == [(0, "b"), (1, "b"), (2, "d")]


def test_flag_vectors_without_concepts_or_of_another_model():
    """No concepts flags nothing; vectors of another size are a ModelMismatchError, as for queries."""
    assert ModerationPolicy().flag_vectors(np.ones((3, 8), dtype=np.float32)) == []
    policy = ModerationPolicy(concept_vectors=np.eye(4, dtype=np.float32)[:1])
    with pytest.raises(ModelMismatchError):
        policy.flag_vectors(np.ones((3, 8), dtype=np.float32))
