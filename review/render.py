"""Render the report page from what was measured: Jinja2 templates, autoescaped, no network.

Everything the page needs is in the folder: CSS inline, no script, no web fonts, images beside it.
This module only shapes data for the templates (tiles, table of contents, histogram geometry).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import jinja2

from review.overview import YearHistogram
from review.pictures import Picture
from review.probing import ImageFlag, ProbeResult
from review.prompts import ProbeSet
from search_core.search import Hit

TEMPLATE = "report.html.j2"
HISTOGRAM_SIZE = (640, 160)     # viewBox of the year histogram; it scales to the page width
HISTOGRAM_MARGIN = (40, 8, 8, 28)   # left, top, right, bottom: room for the axis labels


@dataclass(frozen=True)
class Tile:
    """One image on the page: its files, its alt text and its caption."""

    picture: Picture
    title: str
    year: int | None
    file_name: str
    rank: int | None = None
    score: float | None = None
    flag: ImageFlag | None = None
    group_size: int = 1         # near-identical images this hit stands for, itself included

    @property
    def alt(self) -> str:
        year = str(self.year) if self.year is not None else "year unknown"
        missing = "" if self.picture.available else " (image not available)"
        return f"{self.title}, {year}, {self.file_name}{missing}"


@dataclass(frozen=True)
class ProbeView:
    result: ProbeResult
    tiles: tuple[Tile, ...]

    @property
    def years(self) -> list[tuple[int, int]]:
        """(year, hits of that year), oldest first."""
        return sorted(Counter(t.year for t in self.tiles if t.year is not None).items())

    @property
    def unknown_years(self) -> int:
        return sum(t.year is None for t in self.tiles)


@dataclass(frozen=True)
class CategoryView:
    name: str
    anchor: str
    note: str
    probes: tuple[ProbeView, ...]


@dataclass(frozen=True)
class PartView:
    name: str
    anchor: str
    note: str
    categories: tuple[CategoryView, ...]


@dataclass(frozen=True)
class GroupView:
    size: int
    tiles: tuple[Tile, ...]


@dataclass(frozen=True)
class ModerationSummary:
    """What moderation the report applied: counts and thresholds, never the lists' entries."""

    blocklist: str | None
    terms: int
    concepts_file: str | None
    concepts: int
    categories: tuple[str, ...]
    text_threshold: float | None
    image_threshold: float | None


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str
    count: int


@dataclass(frozen=True)
class HistogramView:
    width: int
    height: int
    bars: tuple[Bar, ...]
    ticks: tuple[tuple[float, str], ...]     # (x, year label) under the axis
    top: int                                 # the count the tallest bar stands for
    baseline: float


def tile_for_hit(hit: Hit, picture: Picture, flag: ImageFlag | None = None) -> Tile:
    return Tile(picture=picture, title=_title(hit.title), year=hit.year, file_name=hit.file_name,
                rank=hit.rank, score=hit.score, flag=flag, group_size=hit.group_size)


def tile_for_row(meta: dict[str, Any], picture: Picture) -> Tile:
    year = meta.get("year")
    return Tile(picture=picture, title=_title(meta.get("title")), year=int(year) if year is not None else None,
                file_name=str(meta.get("file_name") or ""))


def _title(title: Any) -> str:
    return " ".join(str(title).split()) if title else "Untitled"


def table_of_contents(results: Sequence[ProbeResult], pictures: dict[int, Picture],
                      probes: ProbeSet) -> tuple[PartView, ...]:
    """Results grouped by part, then category, each group in the order it first appears."""
    parts: dict[str, dict[str, list[ProbeView]]] = {}
    for result in results:
        flags = result.flags or (None,) * len(result.hits)
        tiles = tuple(tile_for_hit(h, pictures[h.row], f) for h, f in zip(result.hits, flags))
        parts.setdefault(result.probe.part, {}).setdefault(result.probe.category, []).append(
            ProbeView(result=result, tiles=tiles))
    out = []
    for i, (part, categories) in enumerate(parts.items(), start=1):
        out.append(PartView(name=part, anchor=f"part-{i}", note=probes.part_notes.get(part, ""), categories=tuple(
            CategoryView(name=name, anchor=f"part-{i}-cat-{j}", note=probes.category_notes.get(name, ""),
                         probes=tuple(views))
            for j, (name, views) in enumerate(categories.items(), start=1))))
    return tuple(out)


def histogram_view(hist: YearHistogram | None) -> HistogramView | None:
    """Bar geometry in the SVG's own units; labels on about eight evenly spaced bars."""
    if hist is None or not hist.bins:
        return None
    width, height = HISTOGRAM_SIZE
    left, top, right, bottom = HISTOGRAM_MARGIN
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max(b.count for b in hist.bins) or 1
    slot = plot_w / len(hist.bins)
    gap = min(2.0, slot * 0.2)
    bars = tuple(Bar(x=round(left + i * slot + gap / 2, 2), y=round(top + plot_h * (1 - b.count / peak), 2),
                     width=round(slot - gap, 2), height=round(plot_h * b.count / peak, 2), label=b.label,
                     count=b.count) for i, b in enumerate(hist.bins))
    every = max(1, -(-len(hist.bins) // 8))
    ticks = tuple((round(left + i * slot + slot / 2, 2), str(b.start)) for i, b in enumerate(hist.bins)
                  if i % every == 0)
    return HistogramView(width=width, height=height, bars=bars, ticks=ticks, top=peak, baseline=top + plot_h)


def environment() -> jinja2.Environment:
    """Templates from the package; autoescape everywhere (titles and prompts are untrusted text)."""
    env = jinja2.Environment(loader=jinja2.PackageLoader("review", "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["score"] = lambda x: "–" if x is None else f"{x:.3f}"
    env.filters["count"] = lambda n: f"{int(n):,}"
    env.filters["recall"] = lambda x: "not measured" if x is None else f"{x:.3f}"
    return env


def render_page(**context: Any) -> str:
    return environment().get_template(TEMPLATE).render(**context)
