"""The written report, read back: what each prompt shows matches the search, moderation and the
collection; the page is self-contained, accessible and light."""

from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image

from review.pictures import MISSING, THUMB_SIDE
from review.prompts import default_probes
from search_core.collection import Collection
from search_core.encoder import Encoder
from search_core.listfile import read_list
from search_core.moderation import ModerationPolicy, parse_concept
from search_core.search import SearchService
from tests.review.conftest import (
    GROUPS,
    HIDDEN_ROW,
    SECRET_CONCEPT,
    SECRET_TERM,
    UNREADABLE_ROW,
    WEAK_THRESHOLD,
    WrittenReport,
)
from tests.review.page import Node, parse

K = 12
IMAGE_THRESHOLD = 0.1     # the env value the report fixture passes


@pytest.fixture(scope="module")
def page(written_report: WrittenReport) -> Node:
    return parse(written_report.index)


@pytest.fixture(scope="module")
def service(written_report: WrittenReport) -> SearchService:
    collection = Collection.open(written_report.collection)
    return SearchService(collection, Encoder.load(collection.manifest.model, device="cpu"),
                         hidden_files=[written_report.hidden_file])


@pytest.fixture(scope="module")
def batch_hits(page: Node, service: SearchService) -> dict[str, list]:
    """Each prompt's hits searched with the vectors of one batch encoding, as the report encodes them."""
    texts = list(articles(page))
    return {t: service.search_vector(v, k=K).hits for t, v in zip(texts, service.encoder.encode_text(texts))}


def articles(page: Node) -> dict[str, Node]:
    return {a.find_all("span", "q")[0].text: a for a in page.find_all("article", "probe")}


def tile_rows(article: Node) -> list[int]:
    return [int(t.attrs["data-row"]) for t in article.find_all("li", "tile")]


def test_every_prompt_once_in_file_order_under_its_part_and_category(page: Node) -> None:
    """Default prompts, then the curator's own (the repeated one dropped); the TOC lists each, in order."""
    expected = [p.text for p in default_probes().probes] + ["the town hall"]
    assert list(articles(page)) == expected
    toc = page.find_id("contents")
    toc_prompts = [a.text for a in toc.iter("a") if a.attrs["href"].startswith("#p-")]
    assert toc_prompts == expected
    part_titles = [h.text for h in page.find_all("h2") if h.attrs.get("id", "").startswith("part-")]
    assert part_titles == ["Everyday prompts", "Sensitive probes", "Curator's own"]


def test_each_prompt_shows_what_the_bot_would_return(page: Node, service: SearchService,
                                                     batch_hits: dict[str, list]) -> None:
    """The contact sheet is the search's top k for the prompt, hidden row excluded, scores descending.

    The report encodes all prompts in one batch; in bf16 that moves scores by up to ~4e-3 from
    encoding one at a time (other kernels), which can swap near-ties: rows are compared with the
    search of the batch's vectors, scores also with one-at-a-time searches.
    """
    for text, article in articles(page).items():
        assert tile_rows(article) == [h.row for h in batch_hits[text]], text
        scores = [float(s.text) for s in article.find_all("span", "score")]
        assert scores == pytest.approx([h.score for h in batch_hits[text]], abs=5e-4)
        assert scores == pytest.approx([h.score for h in service.search(text, k=K).hits], abs=5e-3)
        assert HIDDEN_ROW not in tile_rows(article)


def test_each_tile_says_how_many_near_identical_images_its_hit_stands_for(
        page: Node, batch_hits: dict[str, list]) -> None:
    """The caption is the hit's own group_size from the collapsed search (1: no caption)."""
    collapsed_seen = False
    for text, article in articles(page).items():
        for tile, hit in zip(article.find_all("li", "tile"), batch_hits[text]):
            dups = [p.text for p in tile.find_all("p", "dups")]
            assert dups == ([f"and {hit.group_size - 1} near-identical"] if hit.group_size > 1 else []), text
            collapsed_seen |= hit.group_size > 1
    assert collapsed_seen


def test_years_of_the_hits_are_listed(page: Node, service: SearchService) -> None:
    article = articles(page)["a sailing ship at sea"]
    years = sorted({h.year for h in service.search("a sailing ship at sea", k=K).hits})
    facts = article.find_all("ul", "facts")[0].text
    listed = [int(y) for y in re.findall(r"\b(1[0-9]{3})\b", facts.split("years:")[1])]
    assert listed == years


def test_moderation_verdicts_match_the_policy_and_never_name_the_entry(
        page: Node, written_report: WrittenReport, service: SearchService) -> None:
    """Refused by term / by concept exactly where the policy refuses; the lists' own entries never appear."""
    policy = ModerationPolicy.from_files(written_report.blocklist, written_report.concepts, service.encoder)
    html = written_report.index.read_text(encoding="utf-8")
    found = articles(page)
    for text, article in found.items():
        by_term = not policy.check_text(text).allowed
        by_concept = not policy.check_vector(service.encoder.encode_text([text])[0], kind="text").allowed
        verdict = article.attrs["data-verdict"]
        facts = article.find_all("ul", "facts")[0].text
        assert verdict == ("refused" if by_term or by_concept else "allowed"), text
        assert ("by a blocked term" in facts) == by_term, text
        assert ("by a blocked concept" in facts) == by_concept, text
    assert found["a savage"].attrs["data-verdict"] == "refused"
    assert "by a blocked term" in found["a savage"].text
    assert "by a blocked concept (category: executions)" in found["a hanging"].text
    assert SECRET_TERM not in html and SECRET_CONCEPT not in html
    assert "2 from concepts.txt in the categories executions, violence" in page.find_id("overview").text


def test_hits_flagged_as_images_are_exactly_those_the_concept_filter_would_flag(
        page: Node, written_report: WrittenReport, service: SearchService) -> None:
    categories, phrases = zip(*(parse_concept(line) for line in read_list(written_report.concepts)))
    concepts = service.encoder.encode_text(list(phrases))
    embeddings = np.asarray(service.collection.embeddings)
    flagged_any = False
    for article in articles(page).values():
        for tile in article.find_all("li", "tile"):
            row = int(tile.attrs["data-row"])
            scores = concepts @ embeddings[row]
            expected = float(scores.max()) >= IMAGE_THRESHOLD
            assert ("flagged" in tile.attrs["class"].split()) == expected
            if expected:
                assert f"flagged: {categories[int(scores.argmax())]}" in tile.text
            flagged_any |= expected
        count = len(article.find_all("li", "flagged"))
        facts = article.find_all("ul", "facts")[0].text
        assert (f"{count} of" in facts) if count else ("no hit flagged" in facts)
    assert flagged_any


def test_weak_match_badge_is_what_search_marks(page: Node, service: SearchService,
                                               batch_hits: dict[str, list]) -> None:
    """The badge is search's own text-query judgment (as the bot shows it), against the manifest's scale;
    the overview shows that scale: its cut, the cut's percentile, the probes and the percentile table."""
    texts = list(articles(page))
    marks = {t: service.search_vector(v, k=K, text_query=True).weak_match
             for t, v in zip(texts, service.encoder.encode_text(texts))}
    weak_seen = strong_seen = False
    for text, article in articles(page).items():
        is_weak = any(b.text == "weak match" for b in article.find_all("span", "weak"))
        assert is_weak == marks[text] == (batch_hits[text][0].score < WEAK_THRESHOLD), text
        assert any(b.text == "not weak" for b in article.find_all("span", "ok")) == (not is_weak), text
        weak_seen |= is_weak
        strong_seen |= not is_weak
    assert weak_seen and strong_seen
    overview = page.find_id("overview").text
    assert f"{WEAK_THRESHOLD:.3f} (the 10th percentile below)" in overview and "p50" in overview
    assert "295 probe prompts" in overview
    table = [c.text for c in page.find_id("overview").find_all("table", "quantiles")[0].find_all("td")]
    assert table == ["p5", "p10", "p50", "0.150", f"{WEAK_THRESHOLD:.3f}", "0.300"]
    weak_total = sum(marks.values())
    assert f"{weak_total} weak matches" in page.text


def test_the_collection_is_as_a_build_writes_it(written_report: WrittenReport) -> None:
    """The fixture's groups and weak-match scale live in the manifest with matching checksums."""
    from search_core.integrity import verify_collection

    report = verify_collection(written_report.collection)
    assert report.problems == []
    collection = Collection.open(written_report.collection)
    assert collection.groups is not None and collection.manifest.match_scale.weak_below == WEAK_THRESHOLD


def test_every_image_has_alt_text_naming_title_year_and_file(page: Node, written_report: WrittenReport) -> None:
    collection = Collection.open(written_report.collection)
    images = page.find_all("img")
    assert len(images) > 500
    for tile in page.find_all("li", "tile"):
        img = tile.find_all("img")[0]
        meta = collection.metadata(int(tile.attrs["data-row"]))
        assert meta["file_name"] in img.attrs["alt"]
        assert str(meta["year"]) in img.attrs["alt"]
        assert " ".join(meta["title"].split()) in img.attrs["alt"]
    assert all(img.attrs.get("alt") for img in images)


def test_page_is_self_contained_and_light(page: Node, written_report: WrittenReport) -> None:
    """No URL leaves the folder, no script; every link and image is a file beside index.html;
    the page loads thumbnails (lazily), never the full views."""
    folder = written_report.index.parent
    html = written_report.index.read_text(encoding="utf-8")
    assert not re.search(r"(?i)(https?:|//[a-z0-9]|@import|url\()", html)
    assert not page.find_all("script") and not page.find_all("link")
    ids = {n.attrs["id"] for n in page.iter() if "id" in n.attrs}
    for a in page.iter("a"):
        href = a.attrs["href"]
        if href.startswith("#"):
            assert href[1:] in ids, href
        else:
            assert (folder / href).is_file(), href
    for img in page.find_all("img"):
        assert (folder / img.attrs["src"]).is_file()
        assert img.attrs["src"].endswith((".t.jpg", MISSING)), "the page shows thumbnails only"
    for img in page.find_all("article", "probe")[0].iter("img"):
        assert img.attrs.get("loading") == "lazy"
    for thumb in folder.glob("img/*.t.jpg"):
        with Image.open(thumb) as im:
            assert max(im.size) <= THUMB_SIDE and im.format == "JPEG"


def test_thumbnails_are_written_once_per_row(page: Node, written_report: WrittenReport) -> None:
    folder = written_report.index.parent
    shown = {int(t.attrs["data-row"]) for t in page.find_all("li", "tile")}
    readable = shown - {UNREADABLE_ROW}
    assert {int(p.name.split(".")[0]) for p in folder.glob("img/*.t.jpg")} == readable
    assert {int(p.name.split(".")[0]) for p in folder.glob("img/*.jpg") if ".t." not in p.name} == readable
    assert len(page.find_all("li", "tile")) > 3 * len(shown)


def test_overview_facts(page: Node, written_report: WrittenReport) -> None:
    """Rows, model, index, skipped files with reasons, hidden rows, histogram, groups, storage."""
    collection = Collection.open(written_report.collection)
    overview = page.find_id("overview")
    text = overview.text
    assert f"Rows {collection.rows}" in text
    assert collection.manifest.model in text and collection.manifest.precision in text
    assert "Flat" in text and "1 (exact search)" in text
    assert "copied into the collection" in text
    assert "Skipped files 2" in text and "broken image: 1" in text and "empty file: 1" in text
    assert "Hidden rows 1 (2 file names in the takedown list)" in text
    bars = overview.find_all("rect")
    counts = [int(re.search(r": ([\d,]+) rows", b.text)[1].replace(",", "")) for b in bars]
    assert sum(counts) == collection.rows
    assert overview.find_all("svg")[0].attrs["role"] == "img"
    group_sizes = [h.text for h in overview.find_all("h4")]
    assert group_sizes == [f"{len(rows)} near-identical images" for rows in GROUPS]
    assert "cosine ≥ 0.95" in text
    for h4, rows in zip(overview.find_all("h4"), GROUPS):
        tiles = h4_sheet(overview, h4)
        assert [int(t.attrs["data-row"]) for t in tiles] == list(rows)


def h4_sheet(section: Node, heading: Node) -> list[Node]:
    """The tiles of the contact sheet that follows a heading."""
    children = section.children
    sheet = next(c for c in children[children.index(heading) + 1:] if c.tag == "ol")
    return sheet.find_all("li", "tile")


def test_an_unreadable_image_gets_a_placeholder_not_a_broken_link(page: Node) -> None:
    tiles = [t for t in page.find_all("li", "tile") if int(t.attrs["data-row"]) == UNREADABLE_ROW]
    assert tiles
    for tile in tiles:
        img = tile.find_all("img")[0]
        assert img.attrs["src"].endswith(MISSING) and "(image not available)" in img.attrs["alt"]
        assert not tile.find_all("a")


def test_keyboard_and_phone_basics(page: Node, written_report: WrittenReport) -> None:
    """A skip link first, focus styles in the CSS, a viewport meta tag and a narrow-screen layout."""
    first_link = next(page.iter("a"))
    assert "skip" in first_link.attrs["class"] and first_link.attrs["href"] == "#contents"
    css = page.find_all("style")[0].text
    assert ":focus-visible" in css and "@media (max-width" in css
    assert any(m.attrs.get("name") == "viewport" for m in page.find_all("meta"))
    assert page.find_all("html")[0].attrs["lang"] == "en"
