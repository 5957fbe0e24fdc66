"""`imagesearch review`: the report a curator reads before opening the bot to a community.

Prints the path of DIR/index.html on stdout and progress on stderr; any error is one
`error: ...` line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from review.prompts import ADD_PREFIX
from search_core.command_line import run_guarded, setup_logging
from search_core.search import MAX_K


def add_review_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "review", help="write an HTML report of what a collection returns for probe prompts",
        description="Write DIR/index.html (and its images): what COLLECTION returns for everyday and "
                    "sensitive probe prompts, and what the configured moderation would do with each. "
                    "It opens from disk, with no network.",
    )
    parser.add_argument("collection", type=Path, metavar="COLLECTION", help="collection folder (from `build`)")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR",
                        help="report folder; a previous report there is replaced, anything else is refused")
    parser.add_argument("--prompts", default=None, metavar="FILE",
                        help=f"prompts, one per line ('category: prompt -- note', # comments): FILE replaces "
                             f"the default set, {ADD_PREFIX}FILE adds to it")
    parser.add_argument("--blocklist", type=Path, default=None, metavar="FILE",
                        help="blocked terms, as the bot's IMAGESEARCH_BLOCKLIST")
    parser.add_argument("--concepts", type=Path, default=None, metavar="FILE",
                        help="blocked concepts, as the bot's IMAGESEARCH_BLOCKED_CONCEPTS")
    parser.add_argument("--hidden", type=Path, default=None, metavar="FILE",
                        help="takedown list: file names (one per line) never to show")
    parser.add_argument("--text-model", default=None, metavar="NAME",
                        help="a text model aligned with the collection's, for prompts in other languages "
                             "(as `imagesearch search --text-model`)")
    parser.add_argument("-k", type=int, default=12, metavar="N", help=f"hits per prompt, 1-{MAX_K} (default 12)")
    parser.set_defaults(func=run_review)
    return parser


def run_review(args: argparse.Namespace) -> int:
    from review.report import ReviewOptions, write_review

    setup_logging()
    options = ReviewOptions(collection=args.collection, out=args.out, prompts=args.prompts,
                            blocklist=args.blocklist, concepts=args.concepts, hidden=args.hidden,
                            text_model=args.text_model, k=args.k)

    def review() -> int:
        print(write_review(options).index_html)
        return 0

    return run_guarded(review)
