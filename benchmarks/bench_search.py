"""Search at 10k, 100k and 1M rows of hard and easy synthetic data, with the index `imagesearch
build` chooses and tunes.

Each collection is built by `build_collection` from a source dataset's embeddings column (the
`--embeddings-column` path) and cached. Per collection: index build time and memory, open time,
single-query latency (one query at a time, as the bot issues them) of a full
`SearchService.search_vector` call with metadata, recall@10 against exact search, for image-like
and (hard data) text-like queries; a year range over 10% of the rows (cost against the
unfiltered query, recall against exact filtered search); and the seed's path (datasets
add_faiss_index + get_nearest_examples) at 10k and 100k in the same process. Every latency
carries `oth`, the share of the CPU other processes used meanwhile: figures are only comparable
on a quiet machine; recall does not depend on load.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import time
from dataclasses import dataclass, field

import numpy as np

from benchmarks.common import Latency, header, measure_load, mib, ratio, rss_bytes, time_calls, verdict

K = 10
SEED_SIZES = (10_000, 100_000)
P95_TARGET_MS = {10_000: 1.0, 100_000: 1.0, 1_000_000: 1.0}
P95_HARD_LIMIT_MS = 2.0
RECALL_TARGET = 0.97
FILTER_COST_TARGET = 2.0
INDEX_MEMORY_TARGET = 0.75 * 2**30
BUILD_TARGET_S = 600
SEED_TARGET = {10_000: 5.0, 100_000: 30.0}
# From this size the search threads are compared (one thread against the default, quiet and busy).
THREADS_CHECK_MIN_ROWS = 1_000_000


@dataclass
class Row:
    """One line of the summary table."""

    kind: str
    n: int
    queries: str
    spec: str = ""
    params: str = ""
    p50: float = float("nan")
    p95: float = float("nan")
    oth: float = 0.0
    recall: float = float("nan")
    filter_p95: float = float("nan")
    filter_cost: float = float("nan")
    filter_recall: float = float("nan")
    index_bytes: int = 0
    build_s: float | None = None
    extra: dict = field(default_factory=dict)


def exact_top(emb: np.ndarray, queries: np.ndarray, start: int = 0, stop: int | None = None,
              k: int = K) -> np.ndarray:
    """Row ids of the exact top k of each query over rows [start, stop), with FAISS's exact kNN."""
    import faiss

    stop = len(emb) if stop is None else stop
    _, rows = faiss.knn(np.ascontiguousarray(queries, dtype=np.float32), np.asarray(emb[start:stop]), k,
                        metric=faiss.METRIC_INNER_PRODUCT)
    return rows + start


def recall(found: list[list[int]], truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t.tolist())) / truth.shape[1] for f, t in zip(found, truth)]))


def bench_collection(kind: str, n: int, *, queries: int, rebuild: bool, seed_baseline: bool) -> list[Row]:
    from benchmarks.synthetic import encoder_for, synthetic_collection
    from search_core.collection import Collection
    from search_core.search import SearchService

    header(f"search, {kind} data, {n:,} rows")
    with measure_load() as build_load:
        syn = synthetic_collection(n, kind=kind, queries=queries, rebuild=rebuild)
    gc.collect()
    before = rss_bytes()
    t = time.perf_counter()
    collection = Collection.open(syn.path)
    open_s = time.perf_counter() - t
    after_open = rss_bytes()
    service = SearchService(collection, encoder_for(collection))
    info = collection.manifest.index
    index_file = (syn.path / "index.faiss").stat().st_size
    params = ", ".join(f"{k}={v}" for k, v in info.params.items()) + (f", re-rank {info.rerank}" if info.rerank else "")
    print(f"index {info.spec} ({params or 'exact'}); build-time recall@10 {info.recall_at_10} (image rows), "
          f"{info.text_recall_at_10} (probe prompts); file {mib(index_file)}")
    if syn.build_s is not None:
        print(f"built with imagesearch build --embeddings-column in {syn.build_s:.1f} s ({build_load})")
    index_s = info.build_seconds
    if index_s is not None:
        ok = index_s <= BUILD_TARGET_S
        print(f"index build (train, add, tune) {index_s:.1f} s (target <= {BUILD_TARGET_S} s at 1M: {verdict(ok)})")
    mem_ok = index_file <= INDEX_MEMORY_TARGET
    print(f"index memory {mib(index_file)} (target <= 0.75 GiB: {verdict(mem_ok)}); open {open_s * 1000:.0f} ms")
    if kind == "hard":
        from benchmarks.hard_data import data_statistics

        sample = np.sort(np.random.default_rng(0).choice(n, min(n, 200_000), replace=False))
        stats = data_statistics(collection.embeddings[sample], np.zeros(len(sample), np.int32), syn.queries,
                                syn.text_queries)
        print("data: " + ", ".join(f"{k} {v:.3f}" for k, v in stats.items() if "clusters" not in k))

    rows_out = []
    query_sets = [("image", syn.queries)] + ([("text", syn.text_queries)] if syn.text_queries is not None else [])
    years = collection.years
    lo_row, hi_row = int(0.45 * n), int(0.55 * n)
    y_from, y_to = int(years[lo_row]), int(years[hi_row])
    start, stop = collection.year_row_range(y_from, y_to)
    for _, qs in query_sets:     # untimed: map the rows the re-rank reads, as a running bot has them
        timed_searches(service, qs, budget_s=30)
    for name, qs in query_sets:
        lat, found = timed_searches(service, qs, budget_s=60)
        rec = recall(found, exact_top(collection.embeddings, qs[:len(found)]))
        target = P95_TARGET_MS.get(n)
        print(f"{name} queries, search_vector k={K}: {lat}  recall@10 {rec:.3f}"
              + (f"  (p95 <= {target} ms: {verdict(lat.p95 <= target)}; recall >= {RECALL_TARGET}: "
                 f"{verdict(rec >= RECALL_TARGET)})" if target else ""))
        f_lat, f_found = timed_searches(service, qs, budget_s=30, year_from=y_from, year_to=y_to)
        f_rec = recall(f_found, exact_top(collection.embeddings, qs[:len(f_found)], start, stop))
        # Cost against the unfiltered queries timed just before, on the same queries.
        base = Latency(ms=lat.ms[:len(f_lat.ms)])
        cost = f_lat.p50 / base.p50
        print(f"  year filter {y_from}-{y_to} ({(stop - start) / n:.0%} of rows): {f_lat}  recall@10 {f_rec:.3f}; "
              f"cost {cost:.2f}x unfiltered p50 (target <= {FILTER_COST_TARGET}x: {verdict(cost <= FILTER_COST_TARGET)})")
        rows_out.append(Row(kind, n, name, info.spec, params, lat.p50, lat.p95, lat.load.others, rec,
                            f_lat.p95, cost, f_rec, index_file, index_s))
    raw = _raw_index_latency(collection.index, syn.queries, info.params)
    print(f"  raw index.search, 1 thread, image queries (no re-rank, no metadata): {raw}")
    if n >= THREADS_CHECK_MIN_ROWS:
        compare_threads(service, query_sets[-1])
    after_q = rss_bytes()
    print(f"memory: RSS +{mib(after_open['rss'] - before['rss'])} at open; after queries "
          f"+{mib(after_q['anon'] - before['anon'])} anon, +{mib(after_q['file'] - before['file'])} file-backed "
          f"(index file {mib(index_file)}; embeddings.npy is mapped and read for the re-rank)")

    if seed_baseline:
        names = collection.dataset.with_format("arrow")["file_name"].to_pylist()
        seed = _seed_path(collection.embeddings, names, syn.queries)
        ours = rows_out[0]
        print(f"seed path (datasets add_faiss_index + get_nearest_examples, k={K}): {seed}")
        r50, r95 = seed.p50 / ours.p50, seed.p95 / ours.p95
        goal = SEED_TARGET.get(n)
        print(f"  ours vs seed: {r50:.1f}x faster at p50, {r95:.1f}x at p95"
              + (f"  (target >= {goal:.0f}x: {verdict(r50 >= goal)})" if goal else ""))
        ours.extra.update(seed_p50=seed.p50, speedup=r50)
    return rows_out


def compare_threads(service, query_set: tuple[str, np.ndarray]) -> None:
    """search_vector with the default search threads (search_core/query_threads.py) against one
    thread, on a quiet machine and beside one busy process, on the same queries."""
    from benchmarks.common import busy_process
    from search_core.query_threads import QUERY_THREADS

    name, qs = query_set
    default = QUERY_THREADS.limit
    for beside in ("quiet", "beside one busy process"):
        lat = {}
        with busy_process() if beside != "quiet" else contextlib.nullcontext():
            for limit in (1, default):
                QUERY_THREADS.set_limit(limit)
                lat[limit] = timed_searches(service, qs, budget_s=15)[0]
        QUERY_THREADS.set_limit(default)
        print(f"  {name} queries, {beside}: 1 thread {lat[1]}; {default} threads {lat[default]}: "
              f"{ratio(lat[default].p50, lat[1].p50)} at p50, {ratio(lat[default].p95, lat[1].p95)} at p95")


def timed_searches(service, qs: np.ndarray, budget_s: float, **filters) -> tuple[Latency, list[list[int]]]:
    """One `search_vector` call per query, timed; returns the latencies and each query's rows."""
    found: list[list[int]] = []
    lat = time_calls(lambda i: found.append([h.row for h in service.search_vector(qs[i], k=K, **filters).hits]),
                     len(qs), warmup=0, budget_s=budget_s)
    return lat, found


def _raw_index_latency(index, qs: np.ndarray, params: dict) -> Latency:
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        return time_calls(lambda i: index.search(qs[i:i + 1], K), len(qs), budget_s=10)
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
    return time_calls(lambda i: ds.get_nearest_examples("embeddings", qs[i], k=K), len(qs), budget_s=30)


def summary_table(rows: list[Row]) -> str:
    """The figures of this run as one Markdown table (BENCHMARKS.md's search table)."""
    lines = [("| data | rows | queries | index (settings) | p50 / p95 ms (oth) | recall@10 | 10% year range "
              "p95 ms, cost, recall | index file | index build |"),
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        build = "" if r.build_s is None else f"{r.build_s:.0f} s"
        lines.append(f"| {r.kind} | {r.n:,} | {r.queries} | {r.spec} ({r.params or 'exact'}) | "
                     f"{r.p50:.2f} / {r.p95:.2f} ({r.oth:.0%}) | {r.recall:.3f} | "
                     f"{r.filter_p95:.2f}, {r.filter_cost:.2f}x, {r.filter_recall:.3f} | {mib(r.index_bytes)} | {build} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_search", description=__doc__)
    parser.add_argument("--sizes", default="10000,100000,1000000", help="comma-separated row counts")
    parser.add_argument("--kinds", default="hard,easy", help="hard, easy or both")
    parser.add_argument("--queries", type=int, default=1000, help="held-out queries per collection and kind")
    parser.add_argument("--rebuild", action="store_true", help="regenerate and rebuild the cached collections")
    parser.add_argument("--no-seed", action="store_true", help="skip the seed baseline")
    args = parser.parse_args(argv)
    rows: list[Row] = []
    for kind in (k.strip() for k in args.kinds.split(",") if k.strip()):
        for n in (int(s) for s in args.sizes.split(",") if s.strip()):
            rows += bench_collection(kind, n, queries=args.queries, rebuild=args.rebuild,
                                     seed_baseline=not args.no_seed and kind == "hard" and n in SEED_SIZES)
            gc.collect()
    header("search summary")
    print(summary_table(rows))
    return rows


if __name__ == "__main__":
    main()
