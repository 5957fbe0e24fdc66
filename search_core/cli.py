"""`imagesearch search`: try a collection from a terminal before any bot exists.

Hits go to stdout (a table, or JSON for scripts); `--sheet` saves a contact sheet. Any error is
one `error: ...` line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from dataclasses import asdict
from pathlib import Path

from search_core.command_line import run_guarded, setup_logging
from search_core.encoder import quiet_model_loading
from search_core.errors import ImageSearchError, QueryError
from search_core.listfile import read_list
from search_core.ordering import ORDER_RELEVANCE, ORDERS, YEAR_POOL_PAGES, describe_order
from search_core.search import MAX_K
from search_core.text_model import MULTILINGUAL_CLIP_B32

log = logging.getLogger(__name__)

TITLE_WIDTH = 50


def add_search_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "search", help="search a collection by a text prompt and/or an image",
        description="Search COLLECTION by meaning: a text PROMPT, an --image, or both. "
                    "Prints the hits (rank, score, year, file name, title); --sheet also saves "
                    "a contact sheet of them.",
    )
    parser.add_argument("collection", type=Path, metavar="COLLECTION", help="collection folder (from `build`)")
    parser.add_argument("prompt", nargs="?", default=None, metavar="PROMPT", help="what to look for, in words")
    parser.add_argument("--image", type=Path, default=None, metavar="PATH", help="an image to search by")
    parser.add_argument("-k", type=int, default=9, metavar="N", help=f"hits per page, 1-{MAX_K} (default 9)")
    parser.add_argument("--offset", type=int, default=0, metavar="N", help="skip the first N hits (paging)")
    parser.add_argument("--year-from", type=int, default=None, metavar="Y", help="earliest year (inclusive)")
    parser.add_argument("--year-to", type=int, default=None, metavar="Y", help="latest year (inclusive)")
    parser.add_argument("--sheet", type=Path, default=None, metavar="OUT.png", help="save a contact sheet PNG")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--model", default=None, metavar="NAME_OR_PATH",
                        help="model to encode the query (default: the one the collection was built with)")
    parser.add_argument("--hidden", type=Path, default=None, metavar="FILE",
                        help="takedown list: file names (one per line) never to show")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                        help="where the model runs (default auto)")
    add_research_options(parser)
    parser.add_argument("--no-collapse", dest="collapse", action="store_false",
                        help="list near-identical images one by one instead of one hit per group")
    parser.add_argument("--expand", type=int, default=None, metavar="ROW",
                        help="list the near-identical images grouped with row ROW (a hit's row in --json, "
                             "or the hint under the table), ranked by PROMPT/--image if given")
    parser.set_defaults(func=run_search)
    return parser


def add_research_options(parser: argparse.ArgumentParser) -> None:
    """Issue #10: prompts in any language, query arithmetic, one book, year order."""
    parser.add_argument("--text-model", default=None, metavar="NAME_OR_PATH",
                        help="encode prompts with this text model aligned with the collection's model, e.g. "
                             f"{MULTILINGUAL_CLIP_B32} (50+ languages) for clip-ViT-B-32 collections")
    parser.add_argument("--add", action="append", default=[], metavar="TEXT",
                        help="add TEXT to the query, taken literally (repeatable)")
    parser.add_argument("--subtract", action="append", default=[], metavar="TEXT",
                        help="subtract TEXT from the query, taken literally (repeatable)")
    parser.add_argument("--book", default=None, metavar="ID",
                        help="only this book (British Library book id); alone, list its illustrations in page order")
    parser.add_argument("--order", default=ORDER_RELEVANCE, choices=ORDERS,
                        help=f"relevance (default), or year: the top {YEAR_POOL_PAGES} pages by relevance "
                             "at a time, oldest first")


def run_search(args: argparse.Namespace) -> int:
    setup_logging()
    return run_guarded(lambda: _search(args) or 0)


def _search(args: argparse.Namespace) -> None:
    """Check everything cheap (prompt, image, hidden list, book id) before loading the model."""
    from search_core.images import load_query_image
    from search_core.query_expr import parse_query
    from search_core.query_vector import encode_expression
    from search_core.search import SearchService, check_page, check_prompt

    check_page(args.k, args.offset, args.year_from, args.year_to)
    prompt = check_prompt(args.prompt)
    image = load_query_image(_read(args.image, "image")) if args.image is not None else None
    listing = prompt is None and image is None and not (args.add or args.subtract)   # --book alone
    if args.expand is not None and (args.book is not None or args.order != ORDER_RELEVANCE):
        raise QueryError("--expand lists one group of near-identical images; it takes no --book or --order.")
    if listing and args.book is None and args.expand is None:
        raise QueryError("Give a PROMPT, an --image, or both (or a --book to list).")
    if listing and args.order != ORDER_RELEVANCE:
        raise QueryError("--order year sorts search results: give a PROMPT or an --image with --book.")
    expression = None if listing else parse_query(prompt, args.add, args.subtract, has_image=image is not None)
    hidden = read_list(args.hidden, what="Hidden list", trailing_comments=False) if args.hidden is not None else []
    service = SearchService.open(args.collection, hidden_files=hidden, load_model=False)
    if args.book is not None:
        service.books.rows(args.book)          # an unknown book fails here, before the model loads
    vector = None
    if expression is not None:
        quiet_model_loading()
        service.load_models(args.model, device=args.device, text_model=args.text_model)
        if expression.is_arithmetic:
            print(f"query: {expression}" + (" + the image" if image is not None else ""), file=sys.stderr)
        vector = encode_expression(service, expression, image).vector
    if args.expand is not None:
        page = service.expand_group(args.expand, vector, k=args.k, offset=args.offset, year_from=args.year_from,
                                    year_to=args.year_to)
    elif vector is None:
        page = service.book_page(args.book, k=args.k, offset=args.offset, year_from=args.year_from,
                                 year_to=args.year_to)
    else:
        page = service.search_page(vector, k=args.k, offset=args.offset, order=args.order, book_id=args.book,
                                   year_from=args.year_from, year_to=args.year_to, collapse=args.collapse,
                                   text_query=image is None)
    if args.sheet is not None:
        _save_sheet(service, page, args.sheet)
    if args.json:
        print(json.dumps({"offset": page.offset, "k": page.k, "total_eligible": page.total_eligible,
                          "has_next": page.has_next, "order": page.order, "order_note": describe_order(page),
                          "collapsed": page.collapsed, "weak_match": page.weak_match,
                          "hits": [_hit_json(h) for h in page.hits]}, indent=2))
    else:
        print(format_table(page, service.collection.manifest.match_scale))


def _hit_json(hit) -> dict:
    """A hit as JSON: a book listing's missing score is null (NaN is not JSON)."""
    out = asdict(hit)
    if math.isnan(out["score"]):
        out["score"] = None
    return out


def format_table(page, scale=None) -> str:
    """Rank, score, year, file name, [copies], [match], title; one hit per line, then a paging
    hint, the rows to --expand, and the weak-match verdict (`scale`: the manifest's MatchScale)."""
    if not page.hits:
        return "No results."
    width = max(len("file"), *(len(h.file_name) for h in page.hits))   # never cut: it identifies the image
    copies = any(h.group_size > 1 for h in page.hits)
    judged = page.weak_match is not None
    lines = [f"{'rank':>4}  {'score':>6}  {'year':>4}  {'file':<{width}}  " + ("copies  " if copies else "")
             + ("match  " if judged else "") + "title"]
    for h in page.hits:
        year = str(h.year) if h.year is not None else "?"
        score = "-" if math.isnan(h.score) else f"{h.score:.3f}"
        lines.append(f"{h.rank:>4}  {score:>6}  {year:>4}  {h.file_name:<{width}}  "
                     + (f"{h.group_size if h.group_size > 1 else '':>6}  " if copies else "")
                     + (f"{'weak' if h.weak else '':<5}  " if judged else "")
                     + _cut(h.title or "", TITLE_WIDTH))
    shown = f"{page.offset + 1}-{page.offset + len(page.hits)} of {page.total_eligible}"
    order = describe_order(page)
    hint = f"; next page: --offset {page.offset + len(page.hits)}" if page.has_next else ""
    lines.append(f"({shown}{', ' + order if order else ''}{hint})")
    if copies:
        lines.append("near-identical: " + ", ".join(f"hit {h.rank} stands for {h.group_size} images "
                                                    f"(--expand {h.row})" for h in page.hits if h.group_size > 1))
    if page.weak_match and scale is not None:
        lines.append(f"weak match: the best hit scores below {scale.weak_below:.3f}, lower than the best hit of "
                     f"{100 - scale.weak_percentile}% of everyday prompts; this collection may hold nothing like it.")
    return "\n".join(lines)


def _save_sheet(service, page, out: Path) -> None:
    from search_core.sheet import render_page_sheet, with_title

    sheet = render_page_sheet(service.collection, page.hits)
    order = describe_order(page)
    if order:
        sheet = with_title(sheet, order[0].upper() + order[1:])
    try:
        sheet.save(out, "PNG")
    except (OSError, ValueError) as exc:
        raise ImageSearchError(f"Cannot write the contact sheet to {out}: {exc.__class__.__name__}.") from exc
    print(f"contact sheet: {out}", file=sys.stderr)


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise QueryError(f"Cannot read the {what} file {path}: {exc.strerror or type(exc).__name__}.") from exc


def _cut(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def main(argv: list[str] | None = None) -> int:
    """`python -m search_core search ...`: the search subcommand without the rest of the CLI."""
    parser = argparse.ArgumentParser(prog="python -m search_core",
                                     description="Search a collection built by `imagesearch build`.")
    add_search_parser(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    return int(args.func(args) or 0)
