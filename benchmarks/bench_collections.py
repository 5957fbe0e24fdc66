"""Issue 10, item 1: memory of a bot serving two collections embedded with one model.

Run in a fresh process (``python -m benchmarks`` starts each benchmark in its own). The bot's own
loading path opens both collections (`bot.library.open_edition` through `bot.shared_models`), with
a loader that loads the random-weight ViT-B/32 (precision auto, as the bot does) and counts its
calls. Both synthetic collections (1M and 100k rows by default, built once and cached, with the
checksums the bot verifies at open) name the same model, so it must load once. Searches then
run in each collection in turn.

Figures, all in this process: the model's share (its peak), each collection's increment after
its searches, and the peak. Target: one model plus each collection's share, i.e. the peak stays
within the model and 1.5 GiB per million rows, at least 1.5 GiB (the single-collection target of
bench_memory), and the second collection costs no second model.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from benchmarks.common import CACHE, header, mib, peak_rss_bytes, rss_bytes, verdict, vit_b32

GIB = 2**30


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_collections", description=__doc__)
    parser.add_argument("--rows", default="1000000,100000", help="rows of each collection, comma-separated")
    parser.add_argument("--queries", type=int, default=300, help="searches in each collection")
    args = parser.parse_args(argv)
    sizes = [int(n) for n in args.rows.split(",") if n.strip()]
    header(f"memory: one bot, {len(sizes)} collections of one model ({', '.join(f'{n:,}' for n in sizes)} rows)")

    import bot.client  # noqa: F401  - the bot's own imports (discord.py) count too
    from benchmarks.synthetic import SyntheticEncoder, synthetic_collection
    from bot.library import Library, open_edition
    from bot.settings import CollectionSpec
    from bot.shared_models import SharedModels
    from search_core.encoder import Encoder

    # The bot verifies each collection's checksums before opening it (bot.library.verify), so these
    # are the synthetic collections with checksums that bench_verify builds (`make bench` builds
    # each size once for both).
    synthetics = [synthetic_collection(n, CACHE / f"verify-{n}", queries=args.queries) for n in sizes]
    if any(s.build_s is not None for s in synthetics):
        print("(built synthetic collections first; their memory is not counted below)")
        import gc

        gc.collect()

    base = rss_bytes()["rss"]
    loaded: list[Encoder] = []

    def load(name: str) -> SyntheticEncoder:
        """The real model's cost, counted per load. The synthetic collections' manifests name the
        model "synthetic-easy", whose probe the easy stand-in answers at every size; queries are
        encoded by the real one."""
        encoder = Encoder.load(str(vit_b32()), device="cpu", precision="auto")
        encoder.encode_text(["a steam engine"])
        loaded.append(encoder)
        return SyntheticEncoder("easy")

    models = SharedModels(load)
    models.get("synthetic-easy")       # what the first collection's opening does first; timed apart
    model_peak = peak_rss_bytes()
    print(f"process after imports {mib(base)}; model loaded and warmed ({loaded[0].precision}): "
          f"+{mib(model_peak - base)} (peak)")
    editions = []
    increments = []
    for i, syn in enumerate(synthetics):
        before = rss_bytes()["rss"]
        t = time.perf_counter()
        edition = open_edition(CollectionSpec(f"c{i}", Path(syn.path)), models)
        open_s = time.perf_counter() - t
        editions.append(edition)
        _search(edition, syn.queries, loaded[0])
        increments.append(rss_bytes()["rss"] - before)
        files = sum(f.stat().st_size for f in Path(syn.path).rglob("*") if f.is_file())
        print(f"collection {i + 1}: {edition.rows:,} rows, opened in {open_s * 1000:.0f} ms; after "
              f"{len(syn.queries)} searches +{mib(increments[-1])} RSS (its files: {mib(files)})")
    library = Library(editions)
    after = rss_bytes()
    peak = peak_rss_bytes()
    print(f"model loads: {len(loaded)} for {len(library)} collections (models: {', '.join(models.names)})")
    print(f"RSS {mib(after['rss'])} ({mib(after['anon'])} anon, {mib(after['file'])} file-backed, shared page cache)")
    print(f"peak RSS {mib(peak)} = imports {mib(base)} + model peak {mib(model_peak - base)} + collections "
          f"{mib(max(0, peak - model_peak))}; a second model would add {mib(model_peak - base)}")
    # bench_memory's target for one 1M-row collection, scaled up for more rows (not down: a small
    # collection's fixed costs, datasets and FAISS structures, do not shrink with it).
    budget = model_peak + 1.5 * GIB * max(1.0, sum(sizes) / 1_000_000)
    ok = len(loaded) == 1 and peak <= budget
    print(f"target: one model load, peak <= model + 1.5 GiB per 1M rows, at least 1.5 GiB "
          f"({mib(budget)}): {verdict(ok)}")
    return {"peak": peak, "model": model_peak - base, "base": base, "loads": len(loaded), "increments": increments}


def _search(edition, queries: np.ndarray, encoder) -> None:
    """Unfiltered, year-filtered and "more like this" searches, as bench_memory runs them."""
    service = edition.service
    years = service.collection.years
    rows = service.collection.rows
    for i, q in enumerate(queries):
        if i < 20:   # the encoder stays in use
            q = 0.5 * q + 0.5 * encoder.encode_text([f"query {i}"])[0]
        q = q / np.linalg.norm(q)
        if i % 3 == 0:
            lo = int(years[int(len(years) * (i % 9) / 10)])
            service.search_vector(q, k=9, year_from=lo, year_to=lo + 20)
        elif i % 3 == 1:
            service.more_like_this(int(i * 3_331) % rows, k=9)
        else:
            service.search_vector(q, k=9)


if __name__ == "__main__":
    main()
