"""The weak-match signal: the build records the probe prompts' best-score distribution, and a text
query whose best hit falls below its 10th percentile is marked, in search, the CLI and JSON."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from scripts.match_scale import match_scale, probe_vectors
from search_core.cli import main
from search_core.collection import Collection
from search_core.encoder import Encoder
from search_core.layout import MatchScale
from search_core.probes import load_probe_prompts
from search_core.search import SearchService
from search_core.weak_match import WEAK_PERCENTILE, is_weak
from tests.fixtures.synthetic_collection import FakeEncoder, unit_vectors, write_collection

DIM = 16
PROMPT = "a woodcut of a lion"


def scale_cutting_at(cut: float) -> MatchScale:
    return MatchScale(probes=3, percentiles={"10": cut}, weak_percentile=WEAK_PERCENTILE, weak_below=cut)


@pytest.fixture(scope="module")
def vectors() -> np.ndarray:
    return unit_vectors(500, DIM, seed=8)


@pytest.fixture(scope="module")
def best_score(vectors: np.ndarray) -> float:
    """The best score PROMPT gets in the synthetic collection."""
    return float((vectors @ FakeEncoder(DIM).encode_text([PROMPT])[0]).max())


def open_with(tmp_path: Path, vectors: np.ndarray, scale: MatchScale | None) -> SearchService:
    folder = write_collection(tmp_path / "c", vectors, match_scale=scale)
    return SearchService(Collection.open(folder), FakeEncoder(DIM))


def test_build_records_the_probe_distribution(collection_dir: Path, tiny_clip: Path) -> None:
    """The manifest holds the percentiles of every probe prompt's exact best score, and the cut
    is the 10th of them."""
    scale = Collection.open(collection_dir).manifest.match_scale
    encoder = Encoder.load(str(tiny_clip), device="cpu")
    probes = probe_vectors(encoder)
    embeddings = np.load(collection_dir / "embeddings.npy")
    best = (probes @ embeddings.T).max(axis=1)
    assert scale.probes == len(load_probe_prompts()) == len(probes)
    assert scale.weak_percentile == 10
    assert scale.weak_below == pytest.approx(np.percentile(best, 10), abs=1e-5)
    values = [scale.percentiles[p] for p in ("5", "10", "25", "50", "75", "90", "95")]
    assert values == sorted(values) and values[0] < values[-1]


def test_match_scale_is_exact_against_every_row() -> None:
    """The scale is computed from each probe's true best row, not an index's approximation."""
    rows, probes = unit_vectors(2000, DIM, seed=1), unit_vectors(50, DIM, seed=2)
    scale = match_scale(rows, probes)
    best = (probes @ rows.T).max(axis=1)
    assert scale.percentiles["50"] == pytest.approx(np.median(best), abs=1e-5)
    assert scale.probes == 50


@pytest.mark.parametrize(("offset_from_best", "weak"), [(+0.01, True), (-0.01, False)])
def test_text_query_below_the_cut_is_weak(tmp_path: Path, vectors: np.ndarray, best_score: float,
                                          offset_from_best: float, weak: bool) -> None:
    """A prompt whose best hit scores under the cut is a weak match, on every page; one above is not.
    Each hit is marked weak exactly when its own score is under the cut."""
    cut = best_score + offset_from_best
    svc = open_with(tmp_path, vectors, scale_cutting_at(cut))
    for offset in (0, 9):
        page = svc.search(PROMPT, k=9, offset=offset)
        assert page.weak_match is weak
        assert [h.weak for h in page.hits] == [h.score < cut for h in page.hits]


def test_image_queries_and_old_manifests_are_not_judged(tmp_path: Path, vectors: np.ndarray,
                                                        best_score: float) -> None:
    """Image queries and more-like-this are not on the text scale; without a scale nothing is marked."""
    from PIL import Image

    svc = open_with(tmp_path, vectors, scale_cutting_at(2.0))    # any text query would be weak
    assert svc.search(PROMPT).weak_match is True
    assert svc.search(image=Image.new("RGB", (8, 8))).weak_match is None
    assert svc.search(PROMPT, image=Image.new("RGB", (8, 8))).weak_match is None
    assert svc.more_like_this(3).weak_match is None
    assert all(h.weak is None for h in svc.more_like_this(3).hits)
    old = open_with(tmp_path / "old", vectors, None)
    page = old.search(PROMPT)
    assert page.weak_match is None and all(h.weak is None for h in page.hits)


def test_is_weak() -> None:
    scale = scale_cutting_at(0.25)
    assert is_weak(0.2, scale) is True and is_weak(0.25, scale) is False and is_weak(0.2, None) is None


# --- the CLI -------------------------------------------------------------------------------------

def run(capsys: pytest.CaptureFixture, *argv: object) -> tuple[int, str, str]:
    code = main(["search", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_marks_a_weak_match(tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch,
                                vectors: np.ndarray, best_score: float) -> None:
    """The table gets a match column and a verdict line; --json a weak_match field."""
    folder = write_collection(tmp_path / "c", vectors, match_scale=scale_cutting_at(best_score + 0.01))
    monkeypatch.setattr("search_core.encoder.Encoder.load", lambda *a, **k: FakeEncoder(DIM))
    code, out, err = run(capsys, folder, PROMPT, "-k", "3")
    assert code == 0, err
    lines = out.splitlines()
    assert "match" in lines[0].split()
    assert all(line.split()[4] == "weak" for line in lines[1:4])
    assert lines[-1].startswith("weak match: the best hit scores below")
    code, out, _ = run(capsys, folder, PROMPT, "-k", "3", "--json")
    page = json.loads(out)
    assert page["weak_match"] is True and all(h["weak"] for h in page["hits"])


def test_cli_without_a_scale_has_no_match_column(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                 monkeypatch: pytest.MonkeyPatch, vectors: np.ndarray) -> None:
    folder = write_collection(tmp_path / "c", vectors)
    monkeypatch.setattr("search_core.encoder.Encoder.load", lambda *a, **k: FakeEncoder(DIM))
    code, out, err = run(capsys, folder, PROMPT, "-k", "3")
    assert code == 0, err
    assert "match" not in out.splitlines()[0] and "weak" not in out
    code, out, _ = run(capsys, folder, PROMPT, "-k", "3", "--json")
    assert json.loads(out)["weak_match"] is None
