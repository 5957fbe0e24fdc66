"""SearchService: ranking, filters inside FAISS (also with approximate indexes), paging, model checks.

Filter and paging tests use synthetic vectors (thousands of rows, a fake encoder); ranking and
model checks use the tiny CLIP and the collection built from generated images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from search_core import search as search_module
from search_core.collection import Collection
from search_core.encoder import Encoder
from search_core.errors import ModelMismatchError, QueryError
from search_core.search import MAX_K, MAX_PROMPT_CHARS, SearchPage, SearchService
from tests.fixtures.images import SampleImage
from tests.fixtures.synthetic_collection import FakeEncoder, unit_vectors, write_collection
from tests.fixtures.tiny_clip import build_tiny_clip

N, DIM = 3000, 16
YEARS = [1800 + i // 10 for i in range(N)]          # 10 rows per year, 1800..2099
NAMES = [f"img_{i:06d}.jpg" for i in range(N)]


def exact_top(vectors: np.ndarray, query: np.ndarray, rows: np.ndarray, k: int) -> list[int]:
    """Reference answer: the k best of the given rows by inner product, computed with numpy."""
    scores = vectors[rows] @ query
    return rows[np.argsort(-scores, kind="stable")[:k]].tolist()


@pytest.fixture(scope="module")
def vectors() -> np.ndarray:
    return unit_vectors(N, DIM, seed=1)


@pytest.fixture(scope="module", params=["Flat", "IVF32,Flat", "HNSW8"])
def synthetic(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
              vectors: np.ndarray) -> Collection:
    """The same synthetic rows under an exact and two approximate indexes, tuned to be lossy."""
    params = {"IVF32,Flat": {"nprobe": 1}, "HNSW8": {"efSearch": 16}}.get(request.param, {})
    folder = tmp_path_factory.mktemp("synthetic") / request.param.replace(",", "_")
    write_collection(folder, vectors, years=YEARS, file_names=NAMES, index_spec=request.param,
                     index_params=params)
    return Collection.open(folder)


@pytest.fixture(scope="module")
def flat(tmp_path_factory: pytest.TempPathFactory, vectors: np.ndarray) -> Collection:
    folder = tmp_path_factory.mktemp("synthetic") / "flat"
    return Collection.open(write_collection(folder, vectors, years=YEARS, file_names=NAMES))


@pytest.fixture(params=["exact-slice", "faiss-then-fallback"])
def filter_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both ways a narrow filter on an approximate index is answered: scoring the year's rows
    directly, or FAISS with a selector and the exact fallback when it comes back short."""
    if request.param == "faiss-then-fallback":
        monkeypatch.setattr(search_module, "EXACT_SEARCH_MAX_ROWS", 0)
    return request.param


def service(collection: Collection, hidden: tuple[str, ...] = ()) -> SearchService:
    return SearchService(collection, FakeEncoder(DIM), hidden_files=hidden)


# --- filters and paging on synthetic vectors -------------------------------------------------

def test_unfiltered_flat_search_is_exact(flat: Collection, vectors: np.ndarray) -> None:
    """With an exact index the hits are the true top k, in score order, ranked from 1."""
    q = vectors[123]
    page = service(flat).search_vector(q, k=9)
    assert [h.row for h in page.hits] == exact_top(vectors, q, np.arange(N), 9)
    assert [h.rank for h in page.hits] == list(range(1, 10))
    assert all(a.score >= b.score for a, b in zip(page.hits, page.hits[1:]))


def test_unfiltered_search_on_every_index_type(synthetic: Collection, vectors: np.ndarray) -> None:
    """With no filter each index type (manifest nprobe/efSearch applied) returns k hits, the query's row first."""
    page = service(synthetic).search_vector(vectors[2222], k=9)
    assert len(page.hits) == 9 and page.hits[0].row == 2222
    assert page.total_eligible == N and page.has_next


def test_hit_carries_metadata(flat: Collection, vectors: np.ndarray) -> None:
    """A hit names its file, year and title from the dataset row."""
    hit = service(flat).search_vector(vectors[55], k=1).hits[0]
    assert (hit.row, hit.file_name, hit.year, hit.title) == (55, "img_000055.jpg", 1805, "Book 13")


def test_year_filter_returns_k_hits_in_range(synthetic: Collection, vectors: np.ndarray,
                                             filter_path: str) -> None:
    """A narrow year filter (20 of 3000 rows) still gives k hits, all in range, equal to exact search."""
    q = vectors[0]                                  # a row far outside the range
    page = service(synthetic).search_vector(q, k=9, year_from=1950, year_to=1951)
    eligible = np.arange(1500, 1520)
    assert len(page.hits) == 9
    assert all(1950 <= h.year <= 1951 for h in page.hits)
    assert [h.row for h in page.hits] == exact_top(vectors, q, eligible, 9)
    assert page.total_eligible == 20


def test_approximate_index_alone_comes_back_short(synthetic: Collection, vectors: np.ndarray) -> None:
    """Precondition of the test above: HNSW really misses rows under this filter (so the
    fallback is exercised); IVF is covered by the nprobe scaling test below."""
    if "HNSW" not in synthetic.manifest.index.spec:
        pytest.skip("only HNSW has no knob that widens with the filter")
    svc = service(synthetic)
    _, rows = svc._faiss_search(vectors[0][None, :], 9, 1500, 1520, np.empty(0, np.int64))
    assert rows.size < 9


def test_scores_are_exact_cosines_on_every_index(synthetic: Collection, vectors: np.ndarray) -> None:
    """Approximate candidates are re-scored from the embeddings: users see exact cosine scores."""
    q = vectors[42]
    page = service(synthetic).search_vector(q, k=9)
    for hit in page.hits:
        assert abs(hit.score - float(vectors[hit.row] @ q)) < 1e-5


def test_ivf_probes_more_lists_for_a_narrow_year_range(synthetic: Collection, vectors: np.ndarray) -> None:
    """IVF alone (no fallback) returns the exact filtered top k: nprobe grows as the range narrows,
    where the manifest's nprobe of 1 would have come back short."""
    if not synthetic.manifest.index.spec.startswith("IVF"):
        pytest.skip("IVF only")
    svc = service(synthetic)
    _, rows = svc._faiss_search(vectors[0][None, :], 9, 1500, 1520, np.empty(0, np.int64))
    assert rows.tolist() == exact_top(vectors, vectors[0], np.arange(1500, 1520), 9)
    assert svc._search_params(None, share=1.0).nprobe == 1
    assert svc._search_params(None, share=20 / 3000).nprobe == 32     # every list


def test_hidden_rows_never_returned(synthetic: Collection, vectors: np.ndarray,
                                    filter_path: str) -> None:
    """Hidden rows stay out even when the query is a hidden row's own vector; k hits still come."""
    hidden = ("img_001503.jpg", "img_001507.jpg")
    svc = service(synthetic, hidden)
    for q in (vectors[1503], vectors[1507]):
        for years in ((None, None), (1950, 1950)):
            page = svc.search_vector(q, k=8, year_from=years[0], year_to=years[1])
            rows = {h.row for h in page.hits}
            assert not rows & {1503, 1507}
            assert len(page.hits) == 8


def test_hidden_rows_reduce_total_eligible(flat: Collection) -> None:
    """total_eligible counts the rows a user could page through: hidden ones are not among them."""
    svc = service(flat, ("img_001500.jpg", "img_001501.jpg", "not-in-collection.jpg"))
    page = svc.search_vector(unit_vectors(1, DIM, seed=9)[0], k=50, year_from=1950, year_to=1950)
    assert page.total_eligible == 8
    assert len(page.hits) == 8 and not page.has_next


def test_pages_are_disjoint_and_continue_the_ranking(synthetic: Collection, vectors: np.ndarray,
                                                     filter_path: str) -> None:
    """Consecutive pages share no row and their ranks follow on; the last page says there is no next."""
    svc = service(synthetic)
    q = vectors[7]
    pages = [svc.search_vector(q, k=9, offset=o, year_from=1900, year_to=1901) for o in (0, 9, 18)]
    rows = [h.row for p in pages for h in p.hits]
    assert len(rows) == len(set(rows)) == 20
    assert [h.rank for p in pages for h in p.hits] == list(range(1, 21))
    assert [p.has_next for p in pages] == [True, True, False]


def test_offset_past_the_end_gives_empty_page(flat: Collection, vectors: np.ndarray) -> None:
    """Paging beyond the eligible rows returns no hits rather than an error."""
    page = service(flat).search_vector(vectors[0], k=9, offset=30, year_from=1900, year_to=1900)
    assert page == SearchPage(hits=[], offset=30, k=9, total_eligible=10)


def test_more_like_this_excludes_the_row(synthetic: Collection, vectors: np.ndarray,
                                         filter_path: str) -> None:
    """More-like-this never returns the image it started from, and still returns k hits."""
    page = service(synthetic).more_like_this(1505, k=9, year_from=1950, year_to=1950)
    rows = [h.row for h in page.hits]
    assert 1505 not in rows and len(rows) == 9
    assert rows == exact_top(vectors, vectors[1505], np.array([r for r in range(1500, 1510) if r != 1505]), 9)


def test_more_like_this_from_a_hidden_row_is_refused(flat: Collection) -> None:
    """A hidden image cannot be used as a query either."""
    with pytest.raises(QueryError, match="not available"):
        service(flat, ("img_000010.jpg",)).more_like_this(10)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"k": 0}, "between 1 and"), ({"k": MAX_K + 1}, "between 1 and"), ({"offset": -1}, "offset"),
    ({"year_from": 1900, "year_to": 1850}, "after"),
])
def test_bad_page_arguments(flat: Collection, kwargs: dict, message: str) -> None:
    """k out of range, a negative offset or a reversed year range is a QueryError."""
    with pytest.raises(QueryError, match=message):
        service(flat).search_vector(unit_vectors(1, DIM)[0], **kwargs)


@pytest.mark.parametrize("vector", [np.full(DIM, np.nan, np.float32), np.ones(DIM + 1, np.float32)])
def test_malformed_query_vector_refused(flat: Collection, vector: np.ndarray) -> None:
    """A vector of the wrong size or with NaNs is a QueryError, not a silent garbage ranking."""
    with pytest.raises(QueryError, match="query vector"):
        service(flat).search_vector(vector)


@pytest.mark.parametrize("text", ["", "   \n\t"])
def test_blank_prompt_refused(flat: Collection, text: str) -> None:
    """An empty or whitespace-only prompt is refused before any search."""
    with pytest.raises(QueryError, match="empty"):
        service(flat).encode_query(text)


def test_no_prompt_and_no_image_refused(flat: Collection) -> None:
    """A query needs a prompt or an image."""
    with pytest.raises(QueryError, match="prompt, an image"):
        service(flat).search()


def test_overlong_prompt_refused(flat: Collection) -> None:
    """Past MAX_PROMPT_CHARS a prompt is refused with the limit in the message."""
    with pytest.raises(QueryError, match=str(MAX_PROMPT_CHARS)):
        service(flat).encode_query("x" * (MAX_PROMPT_CHARS + 1))


def test_text_and_image_give_normalised_sum(flat: Collection) -> None:
    """Prompt plus image is the unit-length sum of the two unit vectors."""
    svc = service(flat)
    img = Image.new("RGB", (8, 8), (10, 20, 30))
    t, i = svc.encode_query("a ship"), svc.encode_query(image=img)
    both = svc.encode_query("a ship", img)
    assert np.allclose(both, (t + i) / np.linalg.norm(t + i), atol=1e-6)


def test_other_model_with_same_dim_is_refused(flat: Collection) -> None:
    """A model that encodes differently is refused, and the error names both models."""
    with pytest.raises(ModelMismatchError, match=r"fake-clip.*other-model"):
        SearchService(flat, FakeEncoder(DIM, model_name="other-model", salt="x"))


def test_model_with_other_dim_is_refused(flat: Collection) -> None:
    """A model with another embedding size is refused before any search."""
    with pytest.raises(ModelMismatchError, match="dimensions"):
        SearchService(flat, FakeEncoder(DIM * 2, model_name="wide-model"))


# --- the tiny CLIP on the collection built from generated images ---------------------------

@pytest.fixture(scope="module")
def clip_service(collection_dir: Path, tiny_clip: Path) -> SearchService:
    return SearchService.open(collection_dir, model=str(tiny_clip), device="cpu")


def test_image_in_collection_ranks_first(clip_service: SearchService,
                                         sample_images: tuple[Path, list[SampleImage]]) -> None:
    """Searching with an image that is in the collection returns that image first."""
    for sample in sample_images[1][:4]:
        with Image.open(sample.path) as img:
            page = clip_service.search(image=img.convert("RGB"), k=3)
        assert page.hits[0].file_name == sample.path.name
        assert page.hits[0].score > 0.99


def test_image_query_of_hidden_image_does_not_return_it(collection_dir: Path, tiny_clip: Path,
                                                        sample_images: tuple[Path, list[SampleImage]]) -> None:
    """An image query with the hidden image itself still never returns it."""
    sample = sample_images[1][5]
    svc = SearchService(Collection.open(collection_dir), Encoder.load(str(tiny_clip), device="cpu"),
                        hidden_files=[sample.path.name])
    with Image.open(sample.path) as img:
        page = svc.search(image=img.convert("RGB"), k=9)
    assert sample.path.name not in {h.file_name for h in page.hits}
    assert len(page.hits) == 9


def test_text_search_returns_k_hits_with_metadata(clip_service: SearchService) -> None:
    """A text prompt gives k hits carrying the parsed British Library metadata."""
    page = clip_service.search("a steam engine", k=5, year_from=1870, year_to=1890)
    assert len(page.hits) == 5
    assert all(h.year in (1870, 1890) and h.title and h.book_id for h in page.hits)


def test_prompt_longer_than_77_tokens_is_truncated_not_refused(clip_service: SearchService) -> None:
    """CLIP reads 77 tokens; a longer prompt under MAX_PROMPT_CHARS still searches."""
    prompt = "an engraving of a ship on a stormy sea " * 10     # ~390 tokens with the byte tokenizer
    assert len(clip_service.search(prompt, k=3).hits) == 3


def test_model_from_another_seed_is_refused(collection_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    """A second tiny CLIP (same architecture, other weights) is caught by the manifest's probe."""
    other = build_tiny_clip(tmp_path_factory.mktemp("other_clip"), seed=1)
    with pytest.raises(ModelMismatchError, match="embedded with"):
        SearchService.open(collection_dir, model=str(other), device="cpu")


def test_combined_query_is_the_normalised_sum_and_refuses_cancellation() -> None:
    """Prompt + image vectors combine to their unit-length sum (as the bot and encode_query both
    use); vectors that cancel out, or none at all, are a QueryError rather than a NaN query."""
    from search_core.search import combine_query_vectors

    t, i = np.array([1.0, 0.0, 0.0], np.float32), np.array([0.0, 1.0, 0.0], np.float32)
    np.testing.assert_allclose(combine_query_vectors(t, i), np.array([1, 1, 0]) / np.sqrt(2), rtol=1e-6)
    np.testing.assert_allclose(combine_query_vectors(None, i), i)
    with pytest.raises(QueryError, match="cancel"):
        combine_query_vectors(t, -t)
    with pytest.raises(QueryError):
        combine_query_vectors(None, None)
