"""Item 5: peak memory of a bot process with a 1M-row collection open.

Run in a fresh process (``python -m benchmarks`` starts each benchmark in its own): imports the
bot, loads the ViT-B/32 the way the bot does (precision auto) and encodes queries, then opens
the synthetic 1M-row collection of bench_search (built and cached there) and searches it,
unfiltered and with year filters. Target: peak RSS <= model + 1.5 GiB.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from benchmarks.common import header, mib, peak_rss_bytes, rss_bytes, verdict, vit_b32

GIB = 2**30


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_memory", description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=300)
    args = parser.parse_args(argv)
    header(f"memory: bot process with a {args.rows:,}-row collection open")

    import bot.client  # noqa: F401  - the bot's own imports (discord.py) count too
    from benchmarks.synthetic import encoder_for, synthetic_collection
    from search_core.collection import Collection
    from search_core.encoder import Encoder
    from search_core.search import SearchService

    base = rss_bytes()["rss"]
    enc = Encoder.load(str(vit_b32()), device="cpu", precision="auto")
    enc.encode_text(["a steam engine"])
    from tests.fixtures.images import draw_image

    enc.encode_images([draw_image(1, (400, 300))])
    model = rss_bytes()["rss"] - base
    model_peak = peak_rss_bytes()
    print(f"process after imports {mib(base)}; model loaded and warmed ({enc.precision}): +{mib(model)}")

    syn = synthetic_collection(args.rows, queries=args.queries)     # bench_search's cached collection
    if syn.build_s is not None:
        print(f"(built the synthetic collection first: {syn.build_s:.0f} s; its memory is not counted below)")
        import gc

        gc.collect()
    before = rss_bytes()["rss"]
    t = time.perf_counter()
    collection = Collection.open(syn.path)
    service = SearchService(collection, encoder_for(collection))
    open_s = time.perf_counter() - t
    years = service.collection.years
    for i, q in enumerate(syn.queries):
        q = 0.5 * q + 0.5 * enc.encode_text([f"query {i}"])[0] if i < 20 else q   # the encoder stays in use
        q = q / np.linalg.norm(q)
        if i % 3 == 0:
            lo = int(years[int(len(years) * (i % 9) / 10)])
            service.search_vector(q, k=9, year_from=lo, year_to=lo + 20)
        elif i % 3 == 1:
            service.more_like_this(int(i * 3_331) % args.rows, k=9)
        else:
            service.search_vector(q, k=9)
    after = rss_bytes()
    peak = peak_rss_bytes()
    # Peak before the collection was opened is the model's own peak (first encode included).
    collection_part = peak - max(model_peak, before)
    print(f"collection open {open_s * 1000:.0f} ms; after {args.queries} searches RSS {mib(after['rss'])} "
          f"({mib(after['anon'])} anon, {mib(after['file'])} file-backed, shared page cache)")
    print(f"peak RSS {mib(peak)} = imports {mib(base)} + model peak {mib(model_peak - base)} "
          f"+ collection {mib(max(0, collection_part))}")
    ok = peak <= base + (model_peak - base) + 1.5 * GIB
    print(f"target peak <= model + 1.5 GiB ({mib(model_peak + 1.5 * GIB)}): {verdict(ok)}")
    return {"peak": peak, "model": model_peak - base, "base": base, "open_s": open_s}


if __name__ == "__main__":
    main()
