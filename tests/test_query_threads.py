"""search_core.query_threads: one query's IVF scan on several cores while it runs alone, on one
core beside another search, and the same hits either way."""

from __future__ import annotations

import threading
from pathlib import Path

import faiss
import pytest

from bot.__main__ import open_library
from bot.settings import Settings
from search_core.collection import Collection
from search_core.query_threads import (
    MIN_LISTS_PER_THREAD,
    QUERY_THREADS,
    QueryThreads,
    split_lists_between_threads,
)
from search_core.search import SearchService
from tests.fixtures.synthetic_collection import FakeEncoder, unit_vectors, write_collection

DIM = 16


def test_a_search_alone_gets_the_limit_and_one_beside_another_gets_one_thread():
    """The count is handed out per claim and OpenMP is set to it on the claiming thread only; a
    second search while the first runs gets one thread, and the limit is back once it is alone."""
    threads = QueryThreads(limit=2)
    inside, release = threading.Event(), threading.Event()
    seen: dict[str, int] = {}

    def first() -> None:
        with threads.claim(lists=64) as count:
            seen["first"], seen["first_omp"] = count, faiss.omp_get_max_threads()
            inside.set()
            release.wait(10)

    worker = threading.Thread(target=first)
    worker.start()
    assert inside.wait(10)
    with threads.claim(lists=64) as count:
        seen["second"], seen["second_omp"] = count, faiss.omp_get_max_threads()
    release.set()
    worker.join(10)
    with threads.claim(lists=64) as count:
        seen["third"] = count
    assert seen == {"first": 2, "first_omp": 2, "second": 1, "second_omp": 1, "third": 2}


@pytest.mark.parametrize("lists, expected", [(0, 1), (1, 1), (MIN_LISTS_PER_THREAD * 2 - 1, 1),
                                             (MIN_LISTS_PER_THREAD * 2, 2), (160, 2)])
def test_a_second_thread_only_for_enough_lists(lists, expected):
    """A search of few inverted lists (or none: HNSW, Flat) stays on one thread: a thread team
    costs more than it saves there, and a waiting thread still risks the barrier's stall."""
    with QueryThreads(limit=2).claim(lists=lists) as count:
        assert count == expected and faiss.omp_get_max_threads() == expected


def test_a_search_while_a_query_is_encoded_keeps_to_one_thread(tiny_clip: Path):
    """Encoding (torch, every core) marks the process busy: a search claiming meanwhile gets one
    thread, and two again once the encoding is done."""
    from search_core.encoder import Encoder

    encoder = Encoder.load(str(tiny_clip), device="cpu")
    seen: list[int] = []
    original = encoder.model.encode

    def encode_and_search(*args, **kwargs):
        with QUERY_THREADS.claim(lists=64) as count:
            seen.append(count)
        return original(*args, **kwargs)

    before = QUERY_THREADS.limit
    try:
        QUERY_THREADS.set_limit(2)
        encoder.model.encode = encode_and_search
        encoder.encode_text(["a ship"])
        with QUERY_THREADS.claim(lists=64) as count:
            seen.append(count)
    finally:
        QUERY_THREADS.set_limit(before)
    assert seen == [1, 2]


def test_the_thread_count_is_restored_after_a_search():
    before = faiss.omp_get_max_threads()
    with QueryThreads(limit=1).claim():
        assert faiss.omp_get_max_threads() == 1
    assert faiss.omp_get_max_threads() == before


@pytest.mark.parametrize("bad", [0, -1, 65, True, 1.5, "2"])
def test_a_bad_limit_is_refused(bad):
    with pytest.raises(ValueError, match="whole number from 1 to 64"):
        QueryThreads().set_limit(bad)


def test_ivf_lists_are_shared_between_threads_and_other_indexes_are_left_alone():
    """parallel_mode 1 splits one query's lists between threads (mode 0, the default, splits a batch by
    query, leaving a single query on one thread); it reaches an IVF behind a transform too."""
    wrapped = faiss.index_factory(DIM, "PCAR8,IVF4,SQ8", faiss.METRIC_INNER_PRODUCT)
    flat = faiss.IndexFlatIP(DIM)
    split_lists_between_threads(wrapped)
    split_lists_between_threads(flat)
    assert faiss.extract_index_ivf(wrapped).parallel_mode == 1


@pytest.fixture(scope="module")
def ivf_service(tmp_path_factory: pytest.TempPathFactory) -> SearchService:
    vectors = unit_vectors(3000, DIM, seed=11)
    folder = write_collection(tmp_path_factory.mktemp("threads") / "c", vectors, years=[1800 + i // 30 for i in range(3000)],
                              index_spec="IVF32,SQ8", index_params={"nprobe": 16}, rerank=40)
    return SearchService(Collection.open(folder), FakeEncoder(DIM))


def test_hits_are_the_same_on_one_thread_and_on_two(ivf_service: SearchService):
    """Splitting the lists changes who scans them, not what is found: rows and scores agree, for
    plain, filtered and deeper pages (16 lists and more: two threads when allowed)."""
    assert faiss.extract_index_ivf(ivf_service.collection.index).parallel_mode == 1
    assert ivf_service.collection.manifest.index.params["nprobe"] >= 2 * MIN_LISTS_PER_THREAD
    queries = unit_vectors(20, DIM, seed=12)
    before = QUERY_THREADS.limit

    def answers() -> list:
        out = []
        for q in queries:
            for kwargs in ({}, {"year_from": 1830, "year_to": 1860}, {"offset": 20}):
                page = ivf_service.search_vector(q, k=10, **kwargs)
                out.append([(h.row, round(h.score, 6)) for h in page.hits])
        return out

    try:
        QUERY_THREADS.set_limit(1)
        one = answers()
        QUERY_THREADS.set_limit(2)
        two = answers()
    finally:
        QUERY_THREADS.set_limit(before)
    assert one == two and all(len(hits) == 10 for hits in one)


def test_the_bot_applies_imagesearch_search_threads(collection_dir: Path):
    """IMAGESEARCH_SEARCH_THREADS sets the process-wide limit when the collections are opened."""
    before = QUERY_THREADS.limit
    try:
        QUERY_THREADS.set_limit(2)
        settings = Settings.from_env({"DISCORD_TOKEN": "unused.token-for-settings", "IMAGESEARCH_DEVICE": "cpu",
                                      "IMAGESEARCH_COLLECTION": str(collection_dir),
                                      "IMAGESEARCH_SEARCH_THREADS": "1"})
        open_library(settings)
        assert QUERY_THREADS.limit == 1
    finally:
        QUERY_THREADS.set_limit(before)
