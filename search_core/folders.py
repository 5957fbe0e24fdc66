"""Swap a finished folder into place: the build's collections and the review's reports.

A reader sees the old folder or the new one, never half of one: the new folder is written beside
the old, the old moves aside (``.OUT.old-<pid>``), the new takes its name, and only then is the
old deleted. A crash between the two renames leaves the old folder aside; each writer restores
it on its next run.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def replace_folder(tmp: Path, out: Path) -> None:
    """Rename tmp to out; an existing out is deleted only after the new one is in place."""
    if not out.exists():
        os.rename(tmp, out)
        return
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    if old.exists():
        shutil.rmtree(old)
    os.rename(out, old)
    try:
        os.rename(tmp, out)
    except OSError:
        os.rename(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)

