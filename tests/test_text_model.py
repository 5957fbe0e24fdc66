"""Prompts in 50+ languages: an aligned text model (search_core.text_model), checked at load.

Uses the tiny multilingual student distilled from the tiny CLIP (tests/fixtures/tiny_text_model.py)
the way clip-ViT-B-32-multilingual-v1 was distilled from clip-ViT-B-32.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from search_core.cli import main
from search_core.collection import Collection
from search_core.encoder import Encoder
from search_core.errors import TextModelMismatchError
from search_core.moderation import ModerationPolicy
from search_core.query_expr import parse_query
from search_core.query_vector import check_terms, encode_expression
from search_core.search import SearchService
from search_core.text_model import (
    ALIGNMENT_MIN_COSINE,
    ALIGNMENT_PROBES,
    TextModel,
    alignment_probes,
    measure_alignment,
)
from tests.fixtures.tiny_text_model import build_tiny_text_model

# The same subject in several languages, each a translation the student was distilled on.
SKULL = ("ein Totenkopf", "un crâne", "una calavera", "череп", "头骨", "جمجمة")
STEAM_ENGINE = ("eine Dampflokomotive", "une locomotive à vapeur", "паровоз", "蒸汽机车")


@pytest.fixture(scope="module")
def clip(tiny_clip: Path) -> Encoder:
    return Encoder.load(str(tiny_clip), device="cpu")


@pytest.fixture(scope="module")
def text_model(tiny_text_model: Path) -> TextModel:
    return TextModel.load(str(tiny_text_model), device="cpu")


@pytest.fixture(scope="module")
def services(collection_dir: Path, clip: Encoder, text_model: TextModel) -> tuple[SearchService, SearchService]:
    """The sample collection with CLIP alone, and with the multilingual text model for prompts."""
    collection = Collection.open(collection_dir)
    return SearchService(collection, clip), SearchService(collection, clip, text_model=text_model)


def rows(page) -> list[int]:
    return [h.row for h in page.hits]


# --- the fixture is built like the real model ----------------------------------------------

def test_fixture_has_the_real_models_layout(tiny_text_model: Path) -> None:
    """Transformer + mean Pooling + Dense without bias, in the Hub model's files, loaded by
    SentenceTransformer(path); its tokenizer reads Latin, Cyrillic, CJK and Arabic, words it has
    never seen too (in pieces)."""
    from sentence_transformers import SentenceTransformer

    modules = json.loads((tiny_text_model / "modules.json").read_text())
    assert [m["type"] for m in modules] == ["sentence_transformers.models.Transformer",
                                            "sentence_transformers.models.Pooling",
                                            "sentence_transformers.models.Dense"]
    dense = json.loads((tiny_text_model / "2_Dense" / "config.json").read_text())
    assert dense["bias"] is False and dense["activation_function"].endswith("Identity")
    model = SentenceTransformer(str(tiny_text_model), device="cpu")
    assert "[UNK]" not in model.tokenizer.tokenize(" ".join(SKULL))
    unseen = model.tokenizer.tokenize("Zürich Лондон 地图 القاهرة")
    assert "[UNK]" not in unseen and len(unseen) > 10


# --- the alignment check -----------------------------------------------------------------------

def test_measure_alignment_separates_same_and_unrelated_spaces() -> None:
    rng = np.random.default_rng(0)
    reference = rng.standard_normal((64, 32)).astype(np.float32)
    same = measure_alignment(reference + 0.3 * rng.standard_normal((64, 32)), reference)
    other = measure_alignment(rng.standard_normal((64, 32)), reference)
    assert same.aligned and same.mean_cosine > 0.9 and same.top5 == 1.0
    assert not other.aligned and abs(other.mean_cosine) < 0.2 and other.top5 < 0.3


def test_a_collapsed_model_is_refused_even_when_close_on_average() -> None:
    """Every prompt mapped to the average direction: close in cosine, but it cannot tell prompts apart."""
    rng = np.random.default_rng(1)
    reference = rng.standard_normal((64, 32)).astype(np.float32) + 3.0     # a narrow cone, like CLIP's
    collapsed = np.repeat(reference.mean(0, keepdims=True), 64, axis=0)
    alignment = measure_alignment(collapsed, reference)
    assert alignment.mean_cosine > ALIGNMENT_MIN_COSINE and not alignment.aligned


def test_aligned_model_is_accepted(text_model: TextModel, clip: Encoder) -> None:
    alignment = text_model.check_aligned(clip)
    assert alignment.aligned and alignment.probes == ALIGNMENT_PROBES
    assert alignment.mean_cosine > 0.8 and alignment.top5 > 0.9


def test_probes_are_spread_over_the_list() -> None:
    from search_core.probes import load_probe_prompts

    probes, everything = alignment_probes(), load_probe_prompts()
    assert len(set(probes)) == ALIGNMENT_PROBES
    assert probes[0] == everything[0] and probes[-1] == everything[-1]


def test_misaligned_model_is_refused_clearly(misaligned_text_model: Path, clip: Encoder) -> None:
    """A model of the right size from another space is refused, naming both models and the fix."""
    model = TextModel.load(str(misaligned_text_model), device="cpu")
    with pytest.raises(TextModelMismatchError) as info:
        model.check_aligned(clip)
    message = str(info.value)
    assert "does not encode into the space" in message and str(misaligned_text_model) in message
    assert "clip-ViT-B-32-multilingual-v1" in message


def test_model_distilled_from_another_clip_is_refused(tmp_path: Path, clip: Encoder) -> None:
    """A properly distilled student of a different CLIP (same dimension) is refused too."""
    from tests.fixtures.tiny_clip import build_tiny_clip

    other = build_tiny_text_model(tmp_path / "student", build_tiny_clip(tmp_path / "other", seed=1), hidden=256)
    with pytest.raises(TextModelMismatchError, match="does not encode"):
        TextModel.load(str(other), device="cpu").check_aligned(clip)


def test_wrong_dimension_is_refused(tmp_path: Path, tiny_clip: Path, clip: Encoder) -> None:
    folder = build_tiny_text_model(tmp_path / "wide", tiny_clip, hidden=64, fit=False, out_features=48)
    with pytest.raises(TextModelMismatchError, match="48-dimensional"):
        TextModel.load(str(folder), device="cpu").check_aligned(clip)


def test_missing_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TextModelMismatchError, match="Could not load the text model"):
        TextModel.load(str(tmp_path / "nope"), device="cpu")


def test_alignment_is_measured_once_per_image_model(text_model: TextModel, clip: Encoder,
                                                    misaligned_text_model: Path) -> None:
    """Several collections sharing one image model pay for one check (a refusal is remembered too)."""
    calls = []

    class Counting:
        model_name = clip.model_name

        def encode_text(self, texts):
            calls.append(len(texts))
            return clip.encode_text(texts)

    counting = Counting()
    first, second = text_model.check_aligned(counting), text_model.check_aligned(counting)
    assert first is second and calls == [ALIGNMENT_PROBES]
    refused = TextModel.load(str(misaligned_text_model), device="cpu")
    for _ in range(2):
        with pytest.raises(TextModelMismatchError):
            refused.check_aligned(counting)
    assert calls == [ALIGNMENT_PROBES] * 2


def test_collections_share_one_model_and_one_check(collection_dir: Path, clip: Encoder,
                                                   tiny_text_model: Path) -> None:
    """Several collections on one image model share the loaded models: the alignment check runs
    once, each service only checks its own manifest's probe (one text)."""
    calls = []

    class Counting:
        model_name = clip.model_name

        def encode_text(self, texts):
            calls.append(len(texts))
            return clip.encode_text(texts)

        def encode_images(self, images, batch_size=32):
            return clip.encode_images(images, batch_size)

    encoder, model = Counting(), TextModel.load(str(tiny_text_model), device="cpu")
    services = [SearchService(Collection.open(collection_dir), encoder, text_model=model) for _ in range(3)]
    assert sorted(calls) == [1, 1, 1, ALIGNMENT_PROBES]
    assert all(s.text_alignment is services[0].text_alignment for s in services)
    assert rows(services[2].search("eine Dampflokomotive", k=3)) == rows(services[0].search("eine Dampflokomotive", k=3))


def test_service_refuses_a_misaligned_text_model(collection_dir: Path, clip: Encoder,
                                                 misaligned_text_model: Path) -> None:
    model = TextModel.load(str(misaligned_text_model), device="cpu")
    with pytest.raises(TextModelMismatchError):
        SearchService(Collection.open(collection_dir), clip, text_model=model)


# --- searching in other languages --------------------------------------------------------------

@pytest.mark.parametrize("prompt", STEAM_ENGINE)
def test_prompt_in_another_language_finds_what_the_english_one_finds(services, prompt: str) -> None:
    """With the text model, a translation ranks the collection as CLIP ranks the English prompt;
    CLIP alone, reading the translation as letters, does not."""
    english, multilingual = services
    want = rows(english.search("a steam engine", k=5))
    got = rows(multilingual.search(prompt, k=5))
    assert got[:3] == want[:3] and len(set(got) & set(want)) >= 4
    assert rows(english.search(prompt, k=5))[:3] != want[:3]


def test_image_vectors_do_not_change(services, sample_images) -> None:
    """Image queries still go through CLIP's image tower: the same vector with or without a text model."""
    from PIL import Image

    english, multilingual = services
    with Image.open(sample_images[1][2].path) as img:
        np.testing.assert_array_equal(english.encode_query(image=img), multilingual.encode_query(image=img))


def test_arithmetic_in_another_language(services) -> None:
    english, multilingual = services
    en = encode_expression(english, parse_query("a steam engine - a skull")).vector
    de = encode_expression(multilingual, parse_query("eine Dampflokomotive - ein Totenkopf")).vector
    assert float(en @ de) > 0.95


# --- moderation in every language ---------------------------------------------------------------

@pytest.mark.parametrize("prompt", SKULL)
def test_blocked_concept_is_refused_in_any_language(services, clip: Encoder, prompt: str) -> None:
    """Concepts are embedded with the collection's CLIP, prompts with the aligned text model: one
    space, so an English concept refuses the same subject asked in German, Russian, Chinese..."""
    english, multilingual = services
    policy = ModerationPolicy.from_phrases(concepts=["a skull"], encoder=clip)
    refused = encode_expression(multilingual, parse_query(f"birds in a tree + {prompt}"), policy=policy)
    assert not refused.allowed and refused.part == "term 2"
    assert policy.check_vector(multilingual.encode_text([prompt])[0], kind="text").category == "blocked_concept"
    # Without the text model the translation is just letters to CLIP, and slips through:
    assert policy.check_vector(english.encode_text([prompt])[0], kind="text").allowed


def test_other_languages_pass_when_innocent(services, clip: Encoder) -> None:
    _, multilingual = services
    policy = ModerationPolicy.from_phrases(concepts=["a skull"], encoder=clip)
    for prompt in STEAM_ENGINE:
        assert encode_expression(multilingual, parse_query(prompt), policy=policy).allowed


def test_blocked_terms_may_be_in_any_language() -> None:
    policy = ModerationPolicy(terms=["Totenkopf", "череп", "头骨"])
    for prompt in ("ship + ein Totenkopf", "ship - ЧЕРЕП", "ship + 头骨"):
        assert check_terms(parse_query(prompt), policy) is not None, prompt
    assert check_terms(parse_query("ship + Dampflokomotive"), policy) is None


# --- the command line ---------------------------------------------------------------------------

def test_cli_text_model(capsys: pytest.CaptureFixture, collection_dir: Path, tiny_text_model: Path) -> None:
    """--text-model: a German prompt lists what the English prompt lists without it."""
    assert main(["search", str(collection_dir), "a steam engine", "-k", "4", "--json"]) == 0
    english = [h["row"] for h in json.loads(capsys.readouterr().out)["hits"]]
    assert main(["search", str(collection_dir), "eine Dampflokomotive", "-k", "4", "--json",
                 "--text-model", str(tiny_text_model)]) == 0
    assert [h["row"] for h in json.loads(capsys.readouterr().out)["hits"]] == english


@pytest.mark.parametrize(("which", "message"), [("misaligned", "does not encode into the space"),
                                                ("missing", "Could not load the text model")])
def test_cli_refuses_a_bad_text_model(capsys: pytest.CaptureFixture, collection_dir: Path, tmp_path: Path,
                                      misaligned_text_model: Path, which: str, message: str) -> None:
    model = misaligned_text_model if which == "misaligned" else tmp_path / "nope"
    code = main(["search", str(collection_dir), "a ship", "--text-model", str(model)])
    out, err = capsys.readouterr()
    assert code == 1 and out == ""
    assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1
