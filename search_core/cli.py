"""`imagesearch search`: try a collection from a terminal before any bot exists.

Hits go to stdout (a table, or JSON for scripts); `--sheet` saves a contact sheet. Any error is
one `error: ...` line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import asdict
from pathlib import Path

from search_core.encoder import quiet_model_loading
from search_core.errors import ImageSearchError, QueryError
from search_core.listfile import read_list
from search_core.search import MAX_K

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
    parser.set_defaults(func=run_search)
    return parser


def run_search(args: argparse.Namespace) -> int:
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        _search(args)
    except ImageSearchError as exc:
        print("error: " + " ".join(str(exc).split()), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted.", file=sys.stderr)
        return 130
    return 0


def _search(args: argparse.Namespace) -> None:
    """Check everything cheap (prompt, image, hidden list) before loading the model."""
    from search_core.images import load_query_image
    from search_core.search import SearchService, check_page, check_prompt

    check_page(args.k, args.offset, args.year_from, args.year_to)
    prompt = check_prompt(args.prompt)
    image = load_query_image(_read(args.image, "image")) if args.image is not None else None
    if prompt is None and image is None:
        raise QueryError("Give a PROMPT, an --image, or both.")
    hidden = read_list(args.hidden, what="Hidden list", trailing_comments=False) if args.hidden is not None else []
    quiet_model_loading()
    service = SearchService.open(args.collection, model=args.model, device=args.device, hidden_files=hidden)
    page = service.search(text=prompt, image=image, k=args.k, offset=args.offset,
                          year_from=args.year_from, year_to=args.year_to)
    if args.sheet is not None:
        _save_sheet(service, page, args.sheet)
    if args.json:
        print(json.dumps({"offset": page.offset, "k": page.k, "total_eligible": page.total_eligible,
                          "has_next": page.has_next, "hits": [asdict(h) for h in page.hits]}, indent=2))
    else:
        print(format_table(page))


def format_table(page) -> str:
    """Rank, score, year, file name, title; one hit per line, then a paging hint."""
    if not page.hits:
        return "No results."
    width = max(len("file"), *(len(h.file_name) for h in page.hits))   # never cut: it identifies the image
    lines = [f"{'rank':>4}  {'score':>6}  {'year':>4}  {'file':<{width}}  title"]
    for h in page.hits:
        year = str(h.year) if h.year is not None else "?"
        lines.append(f"{h.rank:>4}  {h.score:>6.3f}  {year:>4}  {h.file_name:<{width}}  "
                     f"{_cut(h.title or '', TITLE_WIDTH)}")
    shown = f"{page.offset + 1}-{page.offset + len(page.hits)} of {page.total_eligible}"
    hint = f"; next page: --offset {page.offset + len(page.hits)}" if page.has_next else ""
    lines.append(f"({shown}{hint})")
    return "\n".join(lines)


def _save_sheet(service, page, out: Path) -> None:
    from search_core.sheet import render_page_sheet

    sheet = render_page_sheet(service.collection, page.hits)
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
