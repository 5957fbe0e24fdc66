"""Issue 7 item 3: peak memory of drawing one results page of 25 hits of 6000x8000 page scans.

- old: every hit decoded at full size (`Collection.image`) and held, then drawn: what the bot's
  `render_page` and the CLI's ``--sheet`` did before.
- new: `search_core.sheet.render_page_sheet`: one thumbnail at a time (`Collection.thumbnail`),
  a JPEG decoded at reduced scale by its DCT.
- one: a single scan decoded at full size, the bound the new way should stay near (Pillow keeps
  RGB at 4 bytes a pixel, so a 6000x8000 decode is 183 MiB).

Both then encode the sheet as the bot does. Each (format, way) runs in a child process of its own,
so no figure inherits another's heap; the child resets its peak-RSS mark (Linux clear_refs) after
imports and opening the collection, so a figure is the page alone. The scans are generated once
(JPEG and PNG, distinct per row, a paper-like page with text lines and a picture block) and
cached as two collections.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import CACHE, header, mib, ratio, verdict

FORMATS = ("jpeg", "png")
WAYS = ("old", "new", "one")
BOUND = 1.25         # the new way's page peak may exceed one full decode by this factor
THUMB = 256          # bot.results.SHEET_THUMB
COLUMNS = 3          # bot.results.SHEET_COLUMNS
UPLOAD = 10 * 2**20  # Discord's default interaction upload limit


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_page_memory", description=__doc__)
    parser.add_argument("--hits", type=int, default=25)
    parser.add_argument("--size", default="6000x8000", help="scan width x height in pixels")
    parser.add_argument("--child", choices=WAYS, help=argparse.SUPPRESS)
    parser.add_argument("--collection", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_render(args.child, args.collection, args.hits)))
        return {}

    width, height = (int(x) for x in args.size.lower().split("x"))
    header(f"page memory: one page of {args.hits} hits of {width}x{height} scans, old way vs thumbnails")
    results = {}
    for fmt in FORMATS:
        folder = _collection(fmt, args.hits, width, height)
        row = {way: _child(way, folder, args.hits) for way in WAYS}
        old, new, one = row["old"], row["new"], row["one"]
        print(f"{fmt:>4}: page peak old {mib(old['page_peak'])} in {old['seconds']:.1f} s, "
              f"new {mib(new['page_peak'])} in {new['seconds']:.1f} s, one full decode {mib(one['page_peak'])}; "
              f"old/new memory {ratio(old['page_peak'], new['page_peak'])}, "
              f"time {ratio(old['seconds'], new['seconds'])}; new/one {ratio(new['page_peak'], one['page_peak'])}, "
              f"new <= {BOUND:g} x one: {verdict(new['page_peak'] <= BOUND * one['page_peak'])}", flush=True)
        results[fmt] = row
    return results


def _child(way: str, folder: Path, hits: int) -> dict:
    """Run one way in a fresh interpreter and read back its figures."""
    out = subprocess.run([sys.executable, "-m", "benchmarks.bench_page_memory", "--child", way,
                          "--collection", str(folder), "--hits", str(hits)],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _render(way: str, folder: Path, hits: int) -> dict:
    """In the child: open the collection, reset the peak mark, draw and encode one page."""
    from search_core.collection import Collection
    from search_core.search import Hit
    from search_core.sheet import encode_image, render_contact_sheet, render_page_sheet

    collection = Collection.open(folder)
    page = [Hit(rank=i + 1, row=i, score=1.0 - i / 100, file_name=m["file_name"], title=m["title"], year=m["year"])
            for i, m in enumerate(collection.metadata_rows(range(hits)))]
    collection.image(0).close()          # first-use costs (Arrow column view) are not the page's
    exact = _reset_peak()
    before = _status("VmRSS")
    t = time.perf_counter()
    if way == "one":
        collection.image(page[-1].row)
    else:
        if way == "old":
            images = [collection.image(hit.row) for hit in page]
            sheet = render_contact_sheet(page, images, columns=COLUMNS, thumb=THUMB)
        else:
            sheet = render_page_sheet(collection, page, columns=COLUMNS, thumb=THUMB)
        encode_image(sheet, max_bytes=UPLOAD)
    seconds = time.perf_counter() - t
    peak = _status("VmHWM") if exact else _ru_maxrss()
    return {"before": before, "peak": peak, "page_peak": max(0, peak - before), "seconds": seconds,
            "exact_peak": exact}


def _reset_peak() -> bool:
    """Reset this process's peak-RSS mark (VmHWM); False where the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _status(key: str) -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            name, _, value = line.partition(":")
            if name == key:
                return int(value.split()[0]) * 1024
    return 0


def _ru_maxrss() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _collection(fmt: str, n: int, width: int, height: int) -> Path:
    """A cached collection of n generated scans in one format."""
    from tests.fixtures.synthetic_collection import unit_vectors, write_collection

    folder = CACHE / f"page-scans-{fmt}-{n}x{width}x{height}"
    if (folder / "manifest.json").is_file():
        return folder
    print(f"generating {n} {fmt.upper()} scans of {width}x{height} (once, cached in {folder})", flush=True)
    t = time.perf_counter()
    images = [_scan(i, width, height, fmt) for i in range(n)]
    tmp = folder.with_name(folder.name + ".tmp")
    write_collection(tmp, unit_vectors(n, 16), years=[1850] * n, images=images,
                     file_names=[f"scan_{i:03d}.{'jpg' if fmt == 'jpeg' else 'png'}" for i in range(n)])
    os.replace(tmp, folder)
    print(f"  {sum(map(len, images)) / 2**20:.0f} MiB of files in {time.perf_counter() - t:.0f} s", flush=True)
    return folder


def _scan(seed: int, width: int, height: int, fmt: str) -> bytes:
    """A page scan: paper tint, lines of 'text' blocks, a picture block of smooth shading."""
    import io
    import random

    import numpy as np
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    shade = np.linspace(0, 18, height, dtype=np.float32)[:, None]
    paper = np.empty((height, width, 3), dtype=np.uint8)
    for c, base in enumerate((236, 228, 206)):
        paper[..., c] = (base - shade).astype(np.uint8)
    img = Image.fromarray(paper)
    del paper
    draw = ImageDraw.Draw(img)
    margin, line = width // 10, max(8, height // 120)
    top, bottom = height // 12, height - height // 12
    pic = (margin, top + rng.randrange(height // 3), width - margin, 0)
    pic = (pic[0], pic[1], pic[2], pic[1] + height // 3)
    y = top
    while y < bottom:
        if pic[1] <= y <= pic[3]:
            y = pic[3] + line
            continue
        x = margin
        while x < width - margin:
            word = rng.randrange(line * 2, line * 8)
            draw.rectangle([x, y, min(x + word, width - margin), y + line // 2], fill=(40, 34, 30))
            x += word + line
        y += line * 2
    gradient = np.linspace(40, 200, pic[2] - pic[0], dtype=np.float32)[None, :]
    rows = np.linspace(0, np.pi * (2 + seed % 5), pic[3] - pic[1], dtype=np.float32)[:, None]
    block = (gradient * (0.6 + 0.4 * np.sin(rows))).astype(np.uint8)
    img.paste(Image.fromarray(np.stack([block, block * 0 + 90, 255 - block], axis=2)), pic[:2])
    buf = io.BytesIO()
    if fmt == "jpeg":
        img.save(buf, "JPEG", quality=85)
    else:
        img.save(buf, "PNG", compress_level=1)
    return buf.getvalue()


if __name__ == "__main__":
    main()
