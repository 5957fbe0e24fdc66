"""Issue #10 item 4: the cost of searching within one book (rows that are not contiguous).

For each collection size, a "book" of B rows (scattered at random over the collection: the worst
case; and contiguous: a book whose rows sit together, as a year-sorted build usually leaves them)
is searched three ways, one query at a time (k=10):

- shipped: ``SearchService.search_page(book_id=...)``, which scores the book's rows exactly from
  the memory-mapped embeddings (``search_core.rerank.score_rows``);
- FAISS ``IDSelectorBatch`` and ``IDSelectorBitmap`` passed with the search, at the index's own
  nprobe / efSearch (what the year filter does) and, for IVF, probing every list (what recall 1
  would take).

Times are ratios against the same collection's unfiltered ``search_vector`` in the same process;
recall@10 is against numpy over the book's rows.
"""

from __future__ import annotations

import argparse
import gc
from types import SimpleNamespace

import numpy as np

from benchmarks.common import CACHE, Latency, header, time_calls

K = 10
BOOK_SIZES = (30, 200, 1000)


def _exact(emb: np.ndarray, q: np.ndarray, rows: np.ndarray) -> list[int]:
    scores = np.asarray(emb[rows], dtype=np.float32) @ q
    return rows[np.argsort(-scores)[:K]].tolist()


def _recall(found: list[list[int]], truth: list[list[int]]) -> float:
    """Mean share of the true top K found, over the queries answered (truth is per query, in order)."""
    return float(np.mean([len(set(f) & set(t)) / max(1, len(t)) for f, t in zip(found, truth)]))


def _faiss_filtered(index, selector, params_for, q: np.ndarray) -> list[int]:
    _, ids = index.search(q[None], K, params=params_for(selector))
    return [int(i) for i in ids[0] if i >= 0]


def _params(index, manifest_params: dict, every_list: bool):
    """SearchParameters of the index's type carrying the manifest's nprobe/efSearch (or every list)."""
    import faiss

    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None:
        nprobe = ivf.nlist if every_list else int(manifest_params.get("nprobe", ivf.nprobe))
        return lambda sel: faiss.SearchParametersIVF(sel=sel, nprobe=nprobe)
    hnsw = faiss.downcast_index(index)
    if isinstance(hnsw, faiss.IndexHNSW):
        ef = int(manifest_params.get("efSearch", hnsw.hnsw.efSearch))
        return lambda sel: faiss.SearchParametersHNSW(sel=sel, efSearch=ef)
    return lambda sel: faiss.SearchParameters(sel=sel)


def bench_size(n: int, queries: int, budget_s: float) -> None:
    import faiss

    from benchmarks.synthetic import encoder_for, synthetic_collection
    from search_core.collection import Collection
    from search_core.search import SearchService

    header(f"search within a book, {n:,} rows")
    faiss.omp_set_num_threads(1)       # the raw index calls below; SearchService sets its own (query_threads)
    syn = synthetic_collection(n, CACHE / f"synthetic-{n}", queries=queries)
    collection = Collection.open(syn.path)
    service = SearchService(collection, encoder_for(collection))
    qs, emb = syn.queries, collection.embeddings
    index, info = collection.index, collection.manifest.index
    for q in qs[:queries]:      # untimed: page the index in, as a running bot has it
        service.search_vector(q, k=K)
    base = time_calls(lambda i: service.search_vector(qs[i % len(qs)], k=K), queries, budget_s=budget_s)
    print(f"index {info.spec} {info.params}; unfiltered search_vector: {base}")
    rng = np.random.default_rng(0)
    for size in BOOK_SIZES:
        for layout in ("scattered", "contiguous"):
            if layout == "scattered":
                rows = np.sort(rng.choice(n, size, replace=False)).astype(np.int64)
            else:
                start = int(rng.integers(0, n - size))
                rows = np.arange(start, start + size, dtype=np.int64)
            service.books = SimpleNamespace(rows=lambda _id, rows=rows: rows)     # a book of these rows
            truth = [_exact(emb, qs[i % len(qs)], rows) for i in range(queries)]
            lat, found = _timed(lambda q: [h.row for h in service.search_page(q, k=K, book_id="b").hits],
                                qs, queries, budget_s)
            _report(f"book of {size} {layout}: shipped (exact rows)", lat, base, _recall(found, truth))
            batch = faiss.IDSelectorBatch(rows)
            bits = np.zeros((n + 7) // 8, dtype=np.uint8)
            np.bitwise_or.at(bits, rows >> 3, (1 << (rows & 7)).astype(np.uint8))
            bitmap = faiss.IDSelectorBitmap(bits)
            modes = [("own", False)] + ([("every list", True)] if faiss.try_extract_index_ivf(index) else [])
            for name, selector in (("IDSelectorBatch", batch), ("IDSelectorBitmap", bitmap)):
                for mode, every in modes:
                    params_for = _params(index, dict(info.params), every)
                    lat, found = _timed(lambda q, s=selector, p=params_for: _faiss_filtered(index, s, p, q),
                                        qs, queries, budget_s)
                    _report(f"  {name}, {mode} nprobe/ef", lat, base, _recall(found, truth))
    gc.collect()


def _timed(search, qs: np.ndarray, queries: int, budget_s: float) -> tuple[Latency, list[list[int]]]:
    """Latency of search(query) one query at a time, and the rows each call returned, in order."""
    found: list[list[int]] = []
    lat = time_calls(lambda i: found.append(search(qs[i % len(qs)])), queries, warmup=0, budget_s=budget_s)
    return lat, found


def _report(label: str, lat: Latency, base: Latency, rec: float) -> None:
    print(f"{label:<44} {lat}  {lat.p50 / base.p50:7.2f}x unfiltered p50  recall@10 {rec:.3f}", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_filters", description=__doc__)
    parser.add_argument("--sizes", default="100000,1000000", help="comma-separated row counts")
    parser.add_argument("--queries", type=int, default=200, help="queries per case")
    parser.add_argument("--budget", type=float, default=10.0, help="seconds at most per case")
    args = parser.parse_args(argv)
    for n in (int(s) for s in args.sizes.split(",") if s.strip()):
        bench_size(n, args.queries, args.budget)


if __name__ == "__main__":
    main()
