"""Item 2: search at 10k, 100k and 1M rows with the index `imagesearch build` chooses.

Single-query latency (one query at a time, as the bot issues them) through
SearchService.search_vector, recall@10 against exact search, index memory, open time, a year
filter over 10% of rows, and the seed's path (datasets add_faiss_index + get_nearest_examples)
at 10k and 100k in the same process.
"""

from __future__ import annotations

import argparse
import gc
import time

import numpy as np

from benchmarks.common import CACHE, Latency, header, measure_load, mib, rss_bytes, time_calls, verdict

K = 10
SEED_SIZES = (10_000, 100_000)
P95_TARGET_MS = {10_000: 1.0, 100_000: 1.0, 1_000_000: 2.0}
SEED_TARGET = {10_000: 5.0, 100_000: 30.0}


def exact_top(emb: np.ndarray, queries: np.ndarray, start: int = 0, stop: int | None = None,
              k: int = K) -> np.ndarray:
    """Row ids of the exact top k of each query over rows [start, stop), in blocks."""
    stop = len(emb) if stop is None else stop
    best_s = np.full((len(queries), 0), -np.inf, np.float32)
    best_i = np.zeros((len(queries), 0), np.int64)
    for lo in range(start, stop, 100_000):
        hi = min(stop, lo + 100_000)
        s = queries @ np.asarray(emb[lo:hi]).T
        i = np.broadcast_to(np.arange(lo, hi), s.shape)
        s, i = np.concatenate([best_s, s], 1), np.concatenate([best_i, i], 1)
        top = np.argpartition(-s, k - 1, axis=1)[:, :k]
        best_s, best_i = np.take_along_axis(s, top, 1), np.take_along_axis(i, top, 1)
    return best_i


def recall(found: list[list[int]], truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t.tolist())) / truth.shape[1] for f, t in zip(found, truth)]))


def bench_size(n: int, *, queries: int, rebuild: bool, seed_baseline: bool) -> dict:
    from benchmarks.synthetic import ProbeEncoder, synthetic_collection
    from search_core.collection import Collection
    from search_core.search import SearchService

    header(f"search, {n:,} rows")
    syn = synthetic_collection(n, CACHE / f"synthetic-{n}", queries=queries, rebuild=rebuild)
    if syn.build_s is not None:
        print(f"built synthetic collection with the build's index code in {syn.build_s:.1f} s")
    qs = syn.queries
    gc.collect()
    before = rss_bytes()
    t = time.perf_counter()
    collection = Collection.open(syn.path)
    open_s = time.perf_counter() - t
    after_open = rss_bytes()
    service = SearchService(collection, ProbeEncoder())
    info = collection.manifest.index
    index_file = (syn.path / "index.faiss").stat().st_size
    print(f"index {info.spec} {info.params} (build-time recall@10 {info.recall_at_10}); file {mib(index_file)}")
    print(f"open: {open_s * 1000:.0f} ms  (target <= 1000 ms: {verdict(open_s <= 1.0)})")

    found: list[list[int]] = []
    lat = time_calls(lambda i: found.append([h.row for h in service.search_vector(qs[i], k=K).hits]),
                     len(qs), warmup=0, budget_s=60)
    after_q = rss_bytes()
    truth = exact_top(collection.embeddings, qs[:len(found)])
    rec = recall(found, truth)
    target = P95_TARGET_MS.get(n)
    print(f"search_vector k={K}: {lat}  recall@10 {rec:.3f}"
          + (f"  (target p95 <= {target} ms: {verdict(lat.p95 <= target)})" if target else ""))
    raw = _raw_index_latency(collection.index, qs)
    print(f"  raw index.search, 1 thread (no filters, no metadata): {raw}")
    print(f"memory: RSS +{mib(after_open['rss'] - before['rss'])} at open; after queries "
          f"+{mib(after_q['anon'] - before['anon'])} anon, +{mib(after_q['file'] - before['file'])} file-backed "
          f"(index file {mib(index_file)}, embeddings.npy mapped, touched only by exact fallback)")
    result = {"n": n, "spec": info.spec, "open_s": open_s, "p50": lat.p50, "p95": lat.p95, "recall": rec,
              "index_bytes": index_file}

    # Year range covering 10% of rows, in the middle of the collection.
    years = collection.years
    lo_row, hi_row = int(0.45 * n), int(0.55 * n)
    y_from, y_to = int(years[lo_row]), int(years[hi_row])
    start, stop = collection.year_row_range(y_from, y_to)
    f_found: list[list[int]] = []
    f_lat = time_calls(lambda i: f_found.append([h.row for h in service.search_vector(
        qs[i], k=K, year_from=y_from, year_to=y_to).hits]), len(qs), warmup=0, budget_s=30)
    f_truth = exact_top(collection.embeddings, qs[:len(f_found)], start, stop)
    f_rec = recall(f_found, f_truth)
    cost = f_lat.p50 / lat.p50
    print(f"year filter {y_from}-{y_to} ({(stop - start) / n:.0%} of rows): {f_lat}  recall@10 {f_rec:.3f}; "
          f"cost {cost:.2f}x unfiltered p50 (target <= 2x: {verdict(cost <= 2.0)})")
    result.update(filter_p50=f_lat.p50, filter_p95=f_lat.p95, filter_recall=f_rec, filter_cost=cost)

    if seed_baseline:
        seed = _seed_path(collection.embeddings, collection.dataset["file_name"], qs)
        print(f"seed path (datasets add_faiss_index + get_nearest_examples, k={K}): {seed}")
        r50, r95 = seed.p50 / lat.p50, seed.p95 / lat.p95
        goal = SEED_TARGET.get(n)
        print(f"  ours vs seed: {r50:.1f}x faster at p50, {r95:.1f}x at p95"
              + (f"  (target >= {goal:.0f}x: {verdict(r50 >= goal)})" if goal else ""))
        result.update(seed_p50=seed.p50, seed_p95=seed.p95, speedup=r50)
    return result


def _raw_index_latency(index, qs: np.ndarray) -> Latency:
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        return time_calls(lambda i: index.search(qs[i:i + 1], K), len(qs), budget_s=20)
    finally:
        faiss.omp_set_num_threads(before)


def _seed_path(embeddings: np.ndarray, file_names: list[str], qs: np.ndarray) -> Latency:
    """The seed blog's code path, run as it is: FAISS threads left at their default."""
    from datasets import Dataset

    with measure_load() as load:
        t = time.perf_counter()
        ds = Dataset.from_dict({"embeddings": np.asarray(embeddings), "file_name": file_names})
        ds.add_faiss_index(column="embeddings")
        setup_s = time.perf_counter() - t
    print(f"  seed setup (Dataset.from_dict + add_faiss_index): {setup_s:.2f} s ({load})")
    return time_calls(lambda i: ds.get_nearest_examples("embeddings", qs[i], k=K), len(qs), budget_s=40)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_search", description=__doc__)
    parser.add_argument("--sizes", default="10000,100000,1000000", help="comma-separated row counts")
    parser.add_argument("--queries", type=int, default=1000, help="held-out queries per size")
    parser.add_argument("--rebuild", action="store_true", help="rebuild cached synthetic collections")
    parser.add_argument("--no-seed", action="store_true", help="skip the seed baseline")
    args = parser.parse_args(argv)
    results = []
    for n in (int(s) for s in args.sizes.split(",") if s.strip()):
        results.append(bench_size(n, queries=args.queries, rebuild=args.rebuild,
                                  seed_baseline=not args.no_seed and n in SEED_SIZES))
        gc.collect()
    return results


if __name__ == "__main__":
    main()
