"""What every `imagesearch` subcommand does around its work, in one place: the log set-up, and
bad input ending in one `error: ...` line and an exit code, never a traceback.

Here rather than in the router (scripts/cli.py) because each subcommand's module also runs on
its own (`python -m search_core`, `python -m scripts.cli`), and search_core is the one package
that `scripts` and `review` both build on.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from search_core.errors import ImageSearchError

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130      # 128 + SIGINT, as a shell reports Ctrl-C


def setup_logging(level: int = logging.WARNING) -> None:
    """Library warnings on stderr, unless the caller (a test, a host program) set up logging first."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


def print_error(message: str) -> None:
    """One `error:` line: a message's own line breaks and runs of spaces become single spaces."""
    print("error: " + " ".join(message.split()), file=sys.stderr)


def run_guarded(work: Callable[[], int], *, interrupted: str = "interrupted.") -> int:
    """work()'s exit code; an ImageSearchError is its message on one line and EXIT_ERROR, Ctrl-C is
    `interrupted` and EXIT_INTERRUPTED."""
    try:
        return work()
    except ImageSearchError as exc:
        print_error(str(exc))
        return EXIT_ERROR
    except KeyboardInterrupt:
        print_error(interrupted)
        return EXIT_INTERRUPTED
