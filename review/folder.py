"""The report folder: written beside DIR, then renamed into place; only a report is ever replaced.

A report is marked by report.json naming its generator, so `--out` pointing at someone's photos
or at a collection is refused instead of deleted (as `imagesearch build` refuses a folder that is
not a collection).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from search_core.errors import ImageSearchError
from search_core.folders import replace_folder

log = logging.getLogger(__name__)

MARKER = "report.json"
GENERATOR = "imagesearch review"


class ReportFolderError(ImageSearchError):
    """DIR cannot be written or is something other than a report."""


def is_report(folder: Path) -> bool:
    """Whether folder holds a report this program wrote (so replacing it loses nothing else)."""
    try:
        marker = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(marker, dict) and marker.get("generator") == GENERATOR


def check_out(out: Path) -> None:
    """Refuse an --out that exists and is not a previous report (or an empty folder)."""
    if out.exists() and not out.is_dir():
        raise ReportFolderError(f"--out {out} exists and is a file, not a report folder.")
    if out.is_dir() and any(out.iterdir()) and not is_report(out):
        raise ReportFolderError(f"--out {out} is not empty and is not a report (no {MARKER} from "
                                f"{GENERATOR}); refusing to replace it. Choose another --out.")


def write_folder(out: Path, fill: Callable[[Path], None], marker: dict[str, Any]) -> None:
    """Call fill(tmp) on a new folder beside out, add the marker, then swap it in for out.

    A reader sees the old report or the new one, never half of one; a failure leaves out as it was.
    """
    check_out(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReportFolderError(f"Cannot create the folder {out.parent}: {exc.strerror}.") from exc
    _remove_leftovers(out)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    try:
        tmp.mkdir()
        fill(tmp)
        (tmp / MARKER).write_text(json.dumps({"generator": GENERATOR, **marker}, indent=2), encoding="utf-8")
        _swap(tmp, out)
    except OSError as exc:
        raise ReportFolderError(f"Cannot write the report to {out}: {exc.strerror or exc}.") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _swap(tmp: Path, out: Path) -> None:
    """Rename tmp to out; an old report moves aside first and is deleted only after that worked."""
    if out.is_dir() and not is_report(out):      # an empty folder (check_out allowed it)
        out.rmdir()
    replace_folder(tmp, out)


def _remove_leftovers(out: Path) -> None:
    """Undo what a killed run left beside out: half-written folders go; an old report moved aside
    just before the kill comes back if out is gone."""
    tmp, old = f".{out.name}.tmp-", f".{out.name}.old-"
    for path in sorted(out.parent.iterdir()):
        if not path.is_dir() or not path.name.startswith((tmp, old)):
            continue
        if path.name.startswith(old) and is_report(path) and not out.exists():
            log.warning("restoring %s from %s, left by a review that was stopped", out, path.name)
            os.rename(path, out)
        elif path.name.startswith(tmp) or is_report(path):
            shutil.rmtree(path, ignore_errors=True)
