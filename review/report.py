"""Write a review report: open the collection and its model, run the prompts, render the page.

`write_review` is the command (every cheap check before the model loads); `build_report` does
the work on an open `SearchService`, so tests and the benchmark can hand it their own.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from review import folder, render
from review.overview import build_overview
from review.pictures import FULL_MAX_SIDE, write_pictures
from review.probing import ProbeResult, run_probes
from review.prompts import ProbeSet, load_probes
from search_core.errors import ImageSearchError
from search_core.listfile import read_list
from search_core.rerank import is_exact
from search_core.search import SearchService, check_page

log = logging.getLogger(__name__)

INDEX_HTML = "index.html"
GROUPS_SHOWN = 5          # near-duplicate groups in the overview
GROUP_MEMBERS = 6         # thumbnails shown per group
# The bot's variables for the concept thresholds, read so the report refuses what the bot would.
THRESHOLD_VARIABLES = {"text_threshold": "IMAGESEARCH_CONCEPT_THRESHOLD",
                       "image_threshold": "IMAGESEARCH_IMAGE_CONCEPT_THRESHOLD"}


class ReviewError(ImageSearchError):
    """The review cannot run with these options."""


@dataclass(frozen=True)
class ReviewOptions:
    collection: Path
    out: Path
    prompts: str | None = None          # None: the default set; "+FILE": the default set and FILE's
    blocklist: Path | None = None
    concepts: Path | None = None
    hidden: Path | None = None
    text_model: str | None = None
    k: int = 12


@dataclass(frozen=True)
class ReviewSummary:
    index_html: Path
    prompts: int
    images: int                          # distinct rows written as thumbnail + full view
    seconds: dict[str, float] = field(default_factory=dict)   # stage -> wall time


def write_review(options: ReviewOptions, progress: Callable[[str], None] | None = None,
                 env: dict[str, str] | None = None) -> ReviewSummary:
    """The whole command. Raises ImageSearchError subclasses with a sentence for the user."""
    say = progress or _stderr
    check_page(options.k)
    probes = load_probes(options.prompts)
    hidden = read_list(options.hidden, what="Hidden list", trailing_comments=False) if options.hidden else []
    thresholds = _thresholds(os.environ if env is None else env)
    terms = _list_size(options.blocklist, "Blocklist")
    concepts = _list_size(options.concepts, "Concepts file")
    folder.check_out(options.out)

    from search_core.encoder import quiet_model_loading

    quiet_model_loading()
    started = time.perf_counter()
    service = SearchService.open(options.collection, hidden_files=hidden, text_model=options.text_model)
    say(f"opened {options.collection} ({service.collection.rows:,} rows) and its model"
        f"{' and the text model' if service.text_model else ''} in {time.perf_counter() - started:.1f} s")
    policy = moderation = None
    if options.blocklist is not None or options.concepts is not None:
        from search_core.moderation import ModerationPolicy

        policy = ModerationPolicy.from_files(options.blocklist, options.concepts, service.encoder, **thresholds)
        moderation = render.ModerationSummary(
            blocklist=options.blocklist.name if options.blocklist else None, terms=terms,
            concepts_file=options.concepts.name if options.concepts else None, concepts=concepts,
            categories=tuple(policy.concept_categories), text_threshold=policy.text_threshold, image_threshold=policy.image_threshold)
    open_s = time.perf_counter() - started
    summary = build_report(service, probes, options.out, k=options.k, policy=policy, moderation=moderation,
                           hidden_listed=len(hidden), progress=say)
    return replace(summary, seconds={"open": open_s, **summary.seconds})


def build_report(service: SearchService, probes: ProbeSet, out: Path, *, k: int = 12, policy: Any | None = None,
                 moderation: render.ModerationSummary | None = None, hidden_listed: int = 0,
                 progress: Callable[[str], None] | None = None, workers: int | None = None) -> ReviewSummary:
    """Run every probe on an open service and write out/index.html with its images, atomically."""
    say = progress or _stderr
    collection = service.collection
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    overview = build_overview(collection, exact_index=is_exact(collection.index), hidden_listed=hidden_listed,
                              hidden_rows=service.hidden_rows, groups_shown=GROUPS_SHOWN,
                              group_members=GROUP_MEMBERS, text_model=_text_model(service))
    seconds["overview"] = time.perf_counter() - t

    t = time.perf_counter()
    results = run_probes(service, probes.probes, k=k, policy=policy)
    seconds["probes"] = time.perf_counter() - t
    say(f"ran {len(results)} prompts (top {k}) in {seconds['probes']:.1f} s")

    group_rows = [r for g in overview.duplicate_groups or () for r in g.rows]
    rows = {h.row for r in results for h in r.hits} | set(group_rows)
    written: dict[str, int] = {}

    def fill(tmp: Path) -> None:
        t = time.perf_counter()
        pictures = write_pictures(collection, rows, tmp, workers=workers)
        seconds["images"] = time.perf_counter() - t
        say(f"wrote {len(pictures)} thumbnails and full-size views in {seconds['images']:.1f} s")
        t = time.perf_counter()
        html = _page(overview, results, probes, pictures, collection.metadata_rows(group_rows), k=k,
                     moderation=moderation)
        (tmp / INDEX_HTML).write_text(html, encoding="utf-8")
        seconds["render"] = time.perf_counter() - t
        written["images"] = len(pictures)

    folder.write_folder(out, fill, marker={
        "collection": str(collection.path.resolve()), "collection_built_at": collection.manifest.built_at,
        "prompts": len(results), "k": k, "written_at": _now()})
    return ReviewSummary(index_html=out / INDEX_HTML, prompts=len(results), images=written.get("images", 0),
                         seconds=seconds)


def _page(overview, results: list[ProbeResult], probes: ProbeSet, pictures, group_meta: list[dict], *,
          k: int, moderation: render.ModerationSummary | None) -> str:
    groups = None
    if overview.duplicate_groups is not None:
        meta = iter(group_meta)
        groups = [render.GroupView(size=g.size, tiles=tuple(render.tile_for_row(next(meta), pictures[r])
                                                             for r in g.rows))
                  for g in overview.duplicate_groups]
    weak = [r.weak for r in results if r.weak is not None]
    flagged = [r.flagged for r in results if r.flags is not None]
    totals = {"prompts": len(results), "refused": sum(not r.verdict.allowed for r in results),
              "weak": sum(weak) if overview.match_scale is not None else None,
              "flagged": sum(flagged) if flagged else None}
    return render.render_page(
        overview=overview, histogram=render.histogram_view(overview.years), groups=groups, moderation=moderation,
        parts=render.table_of_contents(results, pictures, probes), totals=totals, k=k,
        generated_at=_now(), full_max_side=FULL_MAX_SIDE)


def _text_model(service: SearchService) -> str | None:
    """"NAME (mean cosine 0.93, ...)" for a prompt text model, with how it aligned at load."""
    model = getattr(service, "text_model", None)
    if model is None:
        return None
    alignment = getattr(service, "text_alignment", None)
    return f"{model.model_name} ({alignment})" if alignment is not None else str(model.model_name)


def _thresholds(env: dict[str, str] | Any) -> dict[str, float]:
    out = {}
    for name, variable in THRESHOLD_VARIABLES.items():
        value = (env.get(variable) or "").strip()
        if not value:
            continue
        try:
            out[name] = float(value)
        except ValueError:
            raise ReviewError(f"{variable} must be a number (a cosine between -1 and 1).") from None
        if not np.isfinite(out[name]):
            raise ReviewError(f"{variable} must be a number (a cosine between -1 and 1).")
    return out


def _list_size(path: Path | None, what: str) -> int:
    """Entries in a moderation list (read here too, so a bad file fails before the model loads)."""
    if path is None:
        return 0
    from search_core.moderation import ModerationConfigError

    return len(read_list(path, what=what, error=ModerationConfigError))


def _now() -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
