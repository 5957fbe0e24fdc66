"""Many tiny distinct JPEGs in the seed's layout (year folders, BL file names), fast: 16x16 pixels,
~40 us a file, so 200,000 take about 10 s. Generated once into a pool under the bench cache; a
source of n images is a folder of hard links to the first n (no copy, an own folder per size).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from benchmarks.common import CACHE

POOL = CACHE / "tiny-jpegs"
COUNT_FILE = "count.txt"
FIRST_YEAR, YEARS = 1800, 120


def year_of(i: int) -> int:
    """Years spread over the pool (not in file order), so the build's year sort has work to do."""
    return FIRST_YEAR + (i * 7919) % YEARS


def file_name(i: int) -> str:
    return f"{i:09d}_0_{i % 1000:06d}_1_[Bench title {i % 97}]_{year_of(i)}.jpg"


def relative_path(i: int) -> str:
    return f"{year_of(i)}/{file_name(i)}"


def write_jpeg(path: Path, seed: int) -> None:
    """A 4x4 grid of random colours drawn from the seed, scaled to 16x16: distinct, ~600 bytes."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)).resize((16, 16), Image.NEAREST).save(
        path, "JPEG", quality=80)


def pool(n: int) -> Path:
    """The pool folder holding at least n images (files 0..n-1), extended when it holds fewer."""
    POOL.mkdir(parents=True, exist_ok=True)
    count_file = POOL / COUNT_FILE
    have = int(count_file.read_text()) if count_file.is_file() else 0
    if have < n:
        print(f"writing tiny JPEGs {have:,}..{n:,} into {POOL} (once)", flush=True)
        for i in range(have, n):
            path = POOL / relative_path(i)
            if i < YEARS:
                path.parent.mkdir(exist_ok=True)
            write_jpeg(path, i)
        count_file.write_text(str(n))
    return POOL


def source(n: int, folder: Path, *, start: int = 0) -> Path:
    """A folder of images start..start+n-1 of the pool, as hard links (a copy where links fail)."""
    src = pool(start + n)
    if folder.exists():
        shutil.rmtree(folder)
    for i in range(start, start + n):
        rel = relative_path(i)
        target = folder / rel
        if i - start < YEARS:   # consecutive files fall in consecutive years: these make every folder
            target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src / rel, target)
        except OSError:
            shutil.copy2(src / rel, target)
    return folder
