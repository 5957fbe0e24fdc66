"""The `imagesearch build` subcommand: arguments in, one summary out.

Progress and the summary go to stderr, the collection path to stdout (so scripts can capture
it); a BuildError becomes one `error: ...` line and exit status 1, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from scripts.engines import ENGINES
from scripts.grouping import DUPLICATE_THRESHOLD
from scripts.index_choice import INDEX_NAMES
from scripts.ray_engine.options import add_ray_arguments, ray_options
from search_core import layout
from search_core.command_line import EXIT_ERROR, print_error, run_guarded, setup_logging
from search_core.encoder import DEFAULT_MODEL, quiet_model_loading

log = logging.getLogger(__name__)

SKIPPED_SHOWN = 10


def add_build_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "build", help="embed a folder or dataset of images into a searchable collection",
        description="Embed every image of SOURCE with a CLIP model and write a collection "
                    "(dataset, embeddings, FAISS index) to --out. SOURCE: an image folder "
                    "(imagefolder layout), a dataset saved with save_to_disk, a Parquet file, a Hub "
                    "dataset id, or an http(s) URL of a zip of images. Re-running after a crash "
                    "resumes. Run again on an existing collection, it embeds only new and changed images (--full: all). With --embeddings-column, the vectors the source already holds are "
                    "checked and used instead of embedding the images.",
    )
    parser.add_argument("source", metavar="SOURCE",
                        help="image folder, saved dataset, Parquet file, Hub id or zip URL (with --engine ray also "
                             "s3:// or gs:// folders of images, Parquet or WebDataset shards)")
    parser.add_argument("--out", required=True, type=Path, metavar="COLLECTION",
                        help="collection folder to write (replaced only once the new one is complete)")
    parser.add_argument("--model", default=None, metavar="NAME_OR_PATH",
                        help=f"sentence-transformers CLIP model name or folder (default {DEFAULT_MODEL}); "
                             "with --embeddings-column, required: the model that made the vectors")
    parser.add_argument("--embeddings-column", default=None, metavar="NAME",
                        help="use the vectors in this column of SOURCE instead of embedding images "
                             "(checked: the model's dimension, finite, non-zero; rows may lack an image)")
    parser.add_argument("--batch-size", type=int, default=None, metavar="N",
                        help="images per model call (default: 32 on CPU, 256 on CUDA)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                        help="where the model runs (default auto: CUDA if available)")
    parser.add_argument("--index", default="auto", metavar="|".join(INDEX_NAMES) + "|FACTORY",
                        help="FAISS index: auto picks exact Flat for small collections and a tuned "
                             "IVF-SQ8 for large ones; or any FAISS factory string")
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "fp16", "bf16", "int8"),
                        help="embedding precision (default auto: fp16 on CUDA; on a CPU bf16 where "
                             "it has native bf16, else int8)")
    parser.add_argument("--push-to-hub", default=None, metavar="REPO",
                        help="also push the collection with embeddings to this private Hub dataset "
                             "(needs --images copy)")
    parser.add_argument("--full", action="store_true",
                        help="embed every image again instead of updating the collection at --out (needed "
                             "to change the model or precision of an existing collection)")
    parser.add_argument("--images", default=layout.STORAGE_COPY, choices=layout.STORAGES,
                        help="copy: store each image's bytes in the collection (self-contained, pushable; the "
                             "default); reference: store its path under SOURCE (or its URL) and read it "
                             "from there")
    parser.add_argument("--duplicate-threshold", type=float, default=DUPLICATE_THRESHOLD, metavar="COSINE",
                        help="images at or above this cosine are grouped as near-identical, and search shows "
                             f"one per group (default {DUPLICATE_THRESHOLD}; 1 groups only identical images)")
    parser.add_argument("--engine", default="local", choices=ENGINES,
                        help="who embeds: local (this process, the default) or ray (a Ray cluster, or a local "
                             "Ray; see the Ray engine's options below)")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    add_ray_arguments(parser)
    parser.set_defaults(func=run_build)
    return parser


def run_build(args: argparse.Namespace) -> int:
    from scripts.build import build_collection

    setup_logging()
    quiet_model_loading()
    if args.embeddings_column is not None and args.model is None:
        print_error("--embeddings-column needs --model: the model that made the vectors (text "
                    "queries are encoded with it).")
        return EXIT_ERROR

    def build() -> int:
        summary = build_collection(
            args.source, args.out, model=args.model or DEFAULT_MODEL, batch_size=args.batch_size,
            device=args.device, index=args.index, precision=args.precision, push_to_hub=args.push_to_hub,
            progress=args.progress, duplicate_threshold=args.duplicate_threshold,
            embeddings_column=args.embeddings_column, full=args.full, images=args.images,
            engine=args.engine, ray=ray_options(args),
        )
        print(format_summary(summary), file=sys.stderr)
        print(summary.out)
        return 0

    return run_guarded(build, interrupted="interrupted; run the same command again to resume.")


def format_summary(summary) -> str:
    """Human summary: rows, skipped files (with reasons), time, speed, index and its recall."""
    if summary.embeddings_column is not None:
        lines = [(f"Built {summary.rows} rows into {summary.out} in {summary.seconds:.1f} s from the vectors "
                  f"in column {summary.embeddings_column!r} of the source (not re-embedded).")]
    else:
        lines = [
            f"Built {summary.rows} images into {summary.out} in {summary.seconds:.1f} s "
            f"({summary.images_per_second:.1f} images/s on {summary.device}, {summary.precision}"
            + (f"; {summary.resumed} resumed from an earlier run" if summary.resumed else "") + ").",
        ]
    changes = summary.changes
    if changes is not None and changes.incremental:
        lines.append(f"Updated the collection: added {changes.added:,}, changed {changes.changed:,}, "
                     f"removed {changes.removed:,}, kept {changes.kept:,}.")
    if summary.storage == layout.STORAGE_REFERENCE:
        lines.append("Images referenced from the source, not copied: keep it in place (or see "
                     "IMAGESEARCH_IMAGE_ROOT in the README when it moves).")
    index = summary.index
    if index.recall_at_10 is None:
        lines.append(f"Index: {index.spec} (exact search).")
    else:
        params = ", ".join(f"{k}={v}" for k, v in index.params.items()) or "defaults"
        text = "" if index.text_recall_at_10 is None else f", {index.text_recall_at_10:.3f} for text prompts"
        lines.append(f"Index: {index.spec} ({params}), measured recall@10 {index.recall_at_10:.3f} for image "
                     f"queries{text}, against exact search.")
    lines += _grouping_lines(summary)
    if summary.skipped:
        lines.append(f"Skipped {len(summary.skipped)} file(s) (listed in skipped.jsonl):")
        lines += [f"  {name}: {reason}" for name, reason in summary.skipped[:SKIPPED_SHOWN]]
        if len(summary.skipped) > SKIPPED_SHOWN:
            lines.append(f"  ... and {len(summary.skipped) - SKIPPED_SHOWN} more")
    else:
        lines.append("Skipped 0 files.")
    if summary.pushed_to:
        lines.append(f"Pushed to the Hub dataset {summary.pushed_to} (private).")
    return "\n".join(lines)


def _grouping_lines(summary) -> list[str]:
    """Near-duplicate groups and the weak-match cut, when the build measured them."""
    lines = []
    dups = summary.duplicates
    if dups is not None:
        if dups.grouped_rows:
            lines.append(f"Near-duplicates (cosine >= {dups.threshold:g}): {dups.grouped_rows} images in "
                         f"{dups.grouped_rows - (summary.rows - dups.groups)} groups, the largest {dups.largest}; "
                         f"search shows one per group ({summary.grouping_seconds:.1f} s).")
        else:
            lines.append(f"Near-duplicates (cosine >= {dups.threshold:g}): none.")
    scale = summary.match_scale
    if scale is not None:
        lines.append(f"Weak match: a text query whose best hit scores below {scale.weak_below:.3f} (the "
                     f"{scale.weak_percentile}th percentile of {scale.probes} probe prompts' best scores).")
    return lines


def main(argv: list[str] | None = None) -> int:
    """`python -m scripts.build_cli SOURCE --out ...`: the build subcommand on its own."""
    parser = argparse.ArgumentParser(prog="imagesearch")
    add_build_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["build", *(sys.argv[1:] if argv is None else argv)])
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
