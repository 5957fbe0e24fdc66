"""Rendering pieces: histogram geometry, tiles, anchors."""

from __future__ import annotations

import numpy as np

from review.overview import year_histogram
from review.pictures import Picture
from review.probing import ImageFlag, unique_anchors
from review.render import HISTOGRAM_MARGIN, HISTOGRAM_SIZE, Tile, environment, histogram_view


def test_histogram_bars_fit_the_plot_and_scale_with_counts() -> None:
    years = np.sort(np.r_[np.full(30, 1850), np.full(10, 1860), np.full(5, 1899)])
    view = histogram_view(year_histogram(years, rows=45))
    assert view is not None
    width, height = HISTOGRAM_SIZE
    left, top, right, bottom = HISTOGRAM_MARGIN
    assert all(left <= b.x and b.x + b.width <= width - right + 0.01 for b in view.bars)
    assert all(abs(b.y + b.height - view.baseline) < 0.01 for b in view.bars)
    tallest = max(view.bars, key=lambda b: b.count)
    assert tallest.count == 30 and abs(tallest.height - (height - top - bottom)) < 0.01
    ratio = {b.count: b.height for b in view.bars}
    assert abs(ratio[10] / ratio[30] - 1 / 3) < 0.01
    assert histogram_view(None) is None


def render_tile(tile: Tile) -> str:
    return environment().get_template("_tile.html.j2").render(tile=tile)


def test_tile_caption_alt_flag_and_group_size() -> None:
    picture = Picture(row=7, thumb="img/7.t.jpg", full="img/7.jpg", width=240, height=180)
    tile = Tile(picture=picture, title="Poems <b>&</b>", year=None, file_name="x_[Poems]_.jpg", rank=3, score=0.31234,
                flag=ImageFlag(True, "violence"), group_size=4)
    html = render_tile(tile)
    assert 'alt="Poems &lt;b&gt;&amp;&lt;/b&gt;, year unknown, x_[Poems]_.jpg"' in html
    assert "<b>" not in html                                  # titles are escaped, never markup
    assert 'href="img/7.jpg"' in html and 'src="img/7.t.jpg"' in html and 'loading="lazy"' in html
    assert "#3" in html and "0.312" in html and "flagged: violence" in html and "and 3 near-identical" in html
    plain = render_tile(Tile(picture=picture, title="Poems", year=1850, file_name="p.jpg"))
    assert "near-identical" not in plain and "flagged" not in plain and "#" not in plain


def test_anchors_are_unique_and_url_safe() -> None:
    anchors = unique_anchors(["a ship", "A Ship!", "a ship 2", "a-ship-2", "Œuvres d'art", "!!!", "a ship"])
    assert anchors == ["p-a-ship", "p-a-ship-2", "p-a-ship-2-2", "p-a-ship-2-3", "p-uvres-d-art", "p-prompt",
                       "p-a-ship-3"]
