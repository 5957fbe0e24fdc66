"""`imagesearch` command line: one entry point, a subcommand per job.

Each subcommand's module is imported only when it runs, so `imagesearch search` never imports
discord and `imagesearch bot` never imports the build pipeline.
"""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="imagesearch",
        description="Search a digitised image collection by meaning (CLIP + FAISS).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    from review.cli import add_review_parser
    from scripts.build_cli import add_build_parser
    from search_core.cli import add_search_parser
    from search_core.info_cli import add_info_parser
    from search_core.verify_cli import add_verify_parser

    add_build_parser(sub)
    add_search_parser(sub)
    add_verify_parser(sub)
    add_info_parser(sub)
    add_review_parser(sub)
    bot = sub.add_parser("bot", help="run the Discord bot (configuration from the environment and .env)")
    bot.set_defaults(func=_run_bot)
    run = sub.add_parser("run", help="what `make run` does: the bot if a token is configured, else a demo")
    run.set_defaults(func=_run_main)
    return parser


def _run_bot(args: argparse.Namespace) -> int:
    from bot.__main__ import main as bot_main

    return bot_main()


def _run_main(args: argparse.Namespace) -> int:
    from scripts.run_main import main as run_main

    return run_main()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
