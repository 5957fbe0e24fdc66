"""`imagesearch verify COLLECTION`: is the collection still what its build wrote?

One line per problem on stdout (`FILE: what is wrong`), then a summary line; exit 0 when nothing is
wrong, 1 otherwise. `--json` prints the report as JSON for scripts (same exit codes). The checks
are search_core.integrity's.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from search_core.command_line import EXIT_INTERRUPTED, print_error
from search_core.integrity import SAMPLE_ROWS, VerifyReport, verify_collection

EXIT_PROBLEMS = 1


def add_verify_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "verify", help="check a collection's files against its manifest checksums, and its index",
        description="Check COLLECTION: every file against the sha256 in manifest.json, the manifest "
                    "against its own checksum, the sizes of dataset, embeddings and index against the "
                    "manifest, the index against the embeddings on a sample of rows, and a referenced "
                    "collection's image files. Prints one line per problem; exits 1 if there is any.",
    )
    parser.add_argument("collection", type=Path, metavar="COLLECTION", help="collection folder (from `build`)")
    parser.add_argument("--quick", action="store_true",
                        help="what the bot checks at start-up: skip hashing the dataset's image Arrow "
                             "files (still opened and counted)")
    parser.add_argument("--sample", type=_positive_int, default=SAMPLE_ROWS, metavar="N",
                        help=f"rows searched through the index (default {SAMPLE_ROWS})")
    parser.add_argument("--image-root", type=Path, action="append", default=None, metavar="DIR",
                        help="where a referenced collection's images are now, if they moved (repeatable; "
                             "default IMAGESEARCH_IMAGE_ROOT, else where the build recorded them)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    parser.set_defaults(func=run_verify)
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, not {text!r}")
    return value


def run_verify(args: argparse.Namespace) -> int:
    try:
        report = verify_collection(args.collection, quick=args.quick, sample=args.sample,
                                   progress=args.progress and not args.json, image_roots=args.image_root)
    except KeyboardInterrupt:
        print_error("interrupted.")
        return EXIT_INTERRUPTED
    print(json.dumps(report.to_dict(), indent=2) if args.json else format_report(report))
    return 0 if report.ok else EXIT_PROBLEMS


def format_report(report: VerifyReport) -> str:
    """Problems first, one a line; then what was checked."""
    lines = [str(p) for p in report.problems]
    hashed = f"{len(report.files_hashed)} files ({report.bytes_hashed / 2**20:,.1f} MiB) hashed"
    if report.files_not_hashed:
        hashed += f", {len(report.files_not_hashed)} image Arrow files not hashed (--quick)"
    if report.references_checked:
        hashed += f"; {report.references_checked:,} referenced image files looked for under {report.image_root}"
    if report.ok:
        lines.append(f"OK: {report.path}: {report.rows:,} rows; {hashed}; index and embeddings agree on "
                     f"{report.sampled_rows} sampled rows.")
    else:
        advice = ("see above" if all(p.file == "images" for p in report.problems) else
                  "rebuild the collection with `imagesearch build` or restore it from a copy")
        lines.append(f"{report.path}: {len(report.problems)} problem(s) found; {advice}.")
    return "\n".join(lines)
