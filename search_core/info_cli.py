"""`imagesearch info COLLECTION`: rows, model, index and its recall, build, image storage, disk, skipped
files, years, near-duplicates and the weak-match cut (search_core/info.py). `--json` for scripts.

A missing or broken collection is one `error: ...` line on stderr and exit 1.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import asdict
from pathlib import Path

from search_core.command_line import EXIT_ERROR, print_error, setup_logging
from search_core.errors import ImageSearchError
from search_core.info import CollectionInfo, collection_info
from search_core.layout import STORAGE_REFERENCE

LABEL_WIDTH = 18


def add_info_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "info", help="describe a collection: rows, model, index and recall, build, storage, size",
        description="Describe COLLECTION without loading its model: rows, model and precision, the index "
                    "and its measured recall, when and how it was built, how it holds its images, its "
                    "size on disk, skipped files, year range, near-duplicate groups and the weak-match cut.",
    )
    parser.add_argument("collection", type=Path, metavar="COLLECTION", help="collection folder (from `build`)")
    parser.add_argument("--image-root", type=Path, action="append", default=None, metavar="DIR",
                        help="where a referenced collection's images are now, if they moved (repeatable; "
                             "default IMAGESEARCH_IMAGE_ROOT)")
    parser.add_argument("--json", action="store_true", help="print the facts as JSON")
    parser.set_defaults(func=run_info)
    return parser


def run_info(args: argparse.Namespace) -> int:
    setup_logging(logging.ERROR)
    try:
        info = collection_info(args.collection, image_roots=args.image_root)
    except ImageSearchError as exc:
        print_error(str(exc))
        return EXIT_ERROR
    print(json.dumps(asdict(info), indent=2) if args.json else format_info(info))
    return 0


def format_info(info: CollectionInfo) -> str:
    lines = [("Collection", info.path),
             ("Rows", f"{info.rows:,} (source {info.source})"),
             ("Model", f"{info.model} ({info.embedding_dim}-d, {info.precision})"),
             ("Index", _index(info)),
             ("Built", _built(info)),
             ("Images", _images(info)),
             ("Disk", _size(info.disk_bytes)),
             ("Years", _years(info)),
             ("Skipped", _skipped(info)),
             ("Near-duplicates", _duplicates(info)),
             ("Weak match", _weak(info))]
    out = [f"{label + ':':<{LABEL_WIDTH}}{value}" for label, value in lines]
    out += [f"{'':<{LABEL_WIDTH}}  {s['file']}: {s['reason']}" for s in info.skipped_first]
    return "\n".join(out)


def _index(info: CollectionInfo) -> str:
    index = info.index
    params = ", ".join(f"{k}={v}" for k, v in index.params.items())
    spec = f"{index.spec} ({params})" if params else index.spec
    if index.recall_at_10 is None:
        return f"{spec}, exact search"
    recall = f"recall@10 {index.recall_at_10:.3f} for image queries"
    if info.text_recall_at_10 is not None:
        recall += f", {info.text_recall_at_10:.3f} for text queries"
    return f"{spec}, measured {recall} against exact search"


def _built(info: CollectionInfo) -> str:
    text = info.built_at
    if info.build_seconds is not None:
        text += f" in {info.build_seconds:,.1f} s"
    if info.build_id:
        text += f", build {info.build_id}"
    changes = info.changes
    if changes is not None:
        if changes.incremental:
            text += (f"; incremental: added {changes.added:,}, changed {changes.changed:,}, "
                     f"removed {changes.removed:,}, kept {changes.kept:,}")
        else:
            text += "; from scratch"
    return text


def _images(info: CollectionInfo) -> str:
    images = info.images
    if images.mode != STORAGE_REFERENCE:
        return "copied into the collection (self-contained)"
    if images.root is None:
        return "referenced by URL (read from their source when shown)"
    where = f"referenced under {images.root}"
    if not images.root_found:
        where += " (NOT FOUND: images show as missing; set IMAGESEARCH_IMAGE_ROOT or --image-root)"
    elif images.root_recorded and images.root_recorded != images.root:
        where += f" (built from {images.root_recorded})"
    return where


def _size(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:,} bytes" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1024
    return ""


def _years(info: CollectionInfo) -> str:
    years = info.years
    if years is None:
        return "no year column"
    if years.first is None:
        return f"none known ({years.unknown:,} rows without a year)"
    text = f"{years.first}-{years.last}"
    return text + (f" ({years.unknown:,} rows without a year)" if years.unknown else "")


def _skipped(info: CollectionInfo) -> str:
    if not info.skipped:
        return "none"
    shown = len(info.skipped_first)
    more = f", the first {shown}:" if 0 < shown < info.skipped else ":"
    return f"{info.skipped:,} file(s) not embedded (all in skipped.jsonl){more}"


def _duplicates(info: CollectionInfo) -> str:
    dups = info.duplicates
    if dups is None:
        return "not grouped (built before grouping existed)"
    if not dups.grouped_rows:
        return f"none at cosine >= {dups.threshold:g}"
    multi = dups.grouped_rows - (info.rows - dups.groups)
    return (f"{dups.grouped_rows:,} images in {multi:,} groups at cosine >= {dups.threshold:g}, "
            f"the largest {dups.largest:,}")


def _weak(info: CollectionInfo) -> str:
    weak = info.weak_match
    if weak is None:
        return "not measured"
    return (f"a text query whose best hit scores below {weak.below:.3f} (the {weak.percentile}th percentile "
            f"of {weak.probes} probe prompts' best scores)")
