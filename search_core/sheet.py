"""Contact sheets: one image of a page of hits, the successor of the seed's 3x3 matplotlib plot.

One upload shows a whole page at a glance (Discord allows 10 attachments; a sheet needs one).
Pillow only: no plotting stack in a bot process.
"""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING

from PIL import Image, ImageDraw, ImageFont, ImageOps

from search_core.errors import ImageSearchError, ImageUnavailable
from search_core.search import Hit

if TYPE_CHECKING:
    from search_core.collection import Collection

log = logging.getLogger(__name__)

PAD = 8                     # pixels around and between cells
FONT_SIZE = 14
LINE_HEIGHT = 18
CAPTION_LINES = 2           # "#rank  score  year" and the title
CAPTION_HEIGHT = CAPTION_LINES * LINE_HEIGHT + 4
BACKGROUND = (255, 255, 255)
THUMB_BACKGROUND = (238, 238, 238)
TEXT = (20, 20, 20)
MUTED = (90, 90, 90)
JPEG_QUALITIES = (90, 80, 70, 60, 50, 40)
MIN_SIDE = 64               # below this a sheet is useless: give up instead of shrinking further
PLACEHOLDER_MARGIN = 8      # text inset inside a placeholder cell
PLACEHOLDER_NAME_LINES = 4  # a file name wraps over at most this many lines

# Gives the image of one hit, or None when it has none; may raise ImageUnavailable.
ImageLoader = Callable[[Hit], Image.Image | None]


@lru_cache(maxsize=1)
def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=FONT_SIZE)   # Pillow's bundled font when FreeType is present
    except (TypeError, OSError):
        return ImageFont.load_default()                 # the fixed bitmap font otherwise


def sheet_size(n: int, columns: int = 3, thumb: int = 256) -> tuple[int, int]:
    """The pixel size of a sheet of n cells: callers can plan uploads without rendering."""
    columns = max(1, min(columns, max(n, 1)))
    rows = max(1, -(-n // columns))
    return columns * (thumb + PAD) + PAD, rows * (thumb + CAPTION_HEIGHT + PAD) + PAD


def render_contact_sheet(hits: Sequence[Hit], images: Sequence[Image.Image | None] | ImageLoader,
                         columns: int = 3, thumb: int = 256) -> Image.Image:
    """A grid of hit images, each fitted into thumb x thumb, with rank, score, year and title under it.

    ``images`` is either one image per hit, or a loader called once per hit, in order, whose
    image is pasted and dropped before the next is asked for: the sheet never holds more than one
    (`render_page_sheet` passes `Collection.thumbnail`). A None image, or a loader raising
    ImageUnavailable, gives a placeholder cell naming the file, and the sheet is still drawn.
    With no hits the sheet is one empty cell saying so, so a caller can always send a sheet.
    """
    if columns < 1 or thumb < 16:
        raise ValueError("columns must be >= 1 and thumb >= 16")
    if callable(images):
        load = images
    else:
        if len(hits) != len(images):
            raise ValueError(f"{len(hits)} hits but {len(images)} images")
        given = iter(images)
        load = lambda _hit: next(given)   # asked once per hit, in order
    width, height = sheet_size(len(hits), columns, thumb)
    columns = max(1, min(columns, max(len(hits), 1)))
    sheet = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    font = _font()
    if not hits:
        draw.rectangle([PAD, PAD, PAD + thumb - 1, PAD + thumb - 1], fill=THUMB_BACKGROUND)
        draw.text((PAD + 6, PAD + thumb // 2 - LINE_HEIGHT // 2), "No results", fill=MUTED, font=font)
        return sheet
    for i, hit in enumerate(hits):
        x = PAD + (i % columns) * (thumb + PAD)
        y = PAD + (i // columns) * (thumb + CAPTION_HEIGHT + PAD)
        draw.rectangle([x, y, x + thumb - 1, y + thumb - 1], fill=THUMB_BACKGROUND)
        try:
            img = load(hit)
        except ImageUnavailable as exc:
            log.warning("contact sheet: placeholder for hit %d (%s): %s", hit.rank, hit.file_name,
                        " ".join(str(exc).split()))
            img = None
        if img is None:
            _draw_placeholder(draw, font, x, y, thumb, hit.file_name)
        else:
            # contain() enlarges small images too: a 120 px vignette should fill its cell to be seen.
            rgb = img if img.mode == "RGB" else img.convert("RGB")
            small = ImageOps.contain(rgb, (thumb, thumb), Image.Resampling.LANCZOS)
            sheet.paste(small, (x + (thumb - small.width) // 2, y + (thumb - small.height) // 2))
            del img, rgb, small
        score = "" if math.isnan(hit.score) else f"  {hit.score:.3f}"     # a book listing has no scores
        first = f"#{hit.rank}{score}" + (f"  {hit.year}" if hit.year is not None else "")
        draw.text((x, y + thumb + 2), _fit(first, font, thumb), fill=TEXT, font=font)
        title = hit.title or hit.file_name
        draw.text((x, y + thumb + 2 + LINE_HEIGHT), _fit(title, font, thumb), fill=MUTED, font=font)
    return sheet


def render_page_sheet(collection: Collection, hits: Sequence[Hit], columns: int = 3,
                      thumb: int = 256) -> Image.Image:
    """The contact sheet of a page of hits from ``collection``, one thumbnail decoded at a time.

    The bot's pages and the command line's ``--sheet`` both draw through here, so a page's peak
    memory is one source image at reduced scale (BENCHMARKS.md, page memory) and an unreadable
    image is a placeholder cell, never a failed answer.
    """
    return render_contact_sheet(hits, lambda hit: collection.thumbnail(hit.row, thumb), columns, thumb)


def _draw_placeholder(draw: ImageDraw.ImageDraw, font: ImageFont.ImageFont | ImageFont.FreeTypeFont,
                      x: int, y: int, thumb: int, file_name: str) -> None:
    """A cell for a hit whose image cannot be shown: an outline, "image unavailable" and the file name."""
    draw.rectangle([x, y, x + thumb - 1, y + thumb - 1], outline=MUTED, width=2)
    inner = thumb - 2 * PLACEHOLDER_MARGIN
    lines = ["image unavailable", *_wrap(file_name, font, inner, PLACEHOLDER_NAME_LINES)]
    top = y + (thumb - len(lines) * LINE_HEIGHT) // 2
    for n, line in enumerate(lines):
        draw.text((x + PLACEHOLDER_MARGIN, top + n * LINE_HEIGHT), line, fill=MUTED if n == 0 else TEXT,
                  font=font)


def _wrap(text: str, font: ImageFont.ImageFont | ImageFont.FreeTypeFont, width: int, max_lines: int) -> list[str]:
    """Text broken into at most max_lines lines of width pixels, the last one cut with an ellipsis.

    File names have few spaces, so a line breaks wherever it is full."""
    text = " ".join(text.split())
    lines: list[str] = []
    while len(lines) < max_lines - 1 and font.getlength(text) > width:
        end = max(1, _fitting_prefix(text, font, width))
        lines.append(text[:end])
        text = text[end:].lstrip()
    return [*lines, _fit(text, font, width)] if text else lines


def _fit(text: str, font: ImageFont.ImageFont | ImageFont.FreeTypeFont, width: int) -> str:
    """Text cut with an ellipsis to fit width pixels."""
    text = " ".join(text.split())
    if font.getlength(text) <= width:
        return text
    return text[:_fitting_prefix(text, font, width, "…")].rstrip() + "…"


def _fitting_prefix(text: str, font: ImageFont.ImageFont | ImageFont.FreeTypeFont, width: int,
                    suffix: str = "") -> int:
    """Length of the longest prefix of text that fits width pixels with suffix after it."""
    lo, hi = 0, len(text)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if font.getlength(text[:mid].rstrip() + suffix) <= width:
            lo = mid
        else:
            hi = mid - 1
    return lo


def encode_image(img: Image.Image, max_bytes: int, prefer: str = "PNG") -> tuple[bytes, str]:
    """Encode to fit max_bytes: (data, extension), extension "png" or "jpg".

    PNG first (sharp text, exact pixels) unless prefer="JPEG"; then JPEG at falling quality; then
    the image is scaled down by a quarter at a time. Discord refuses an upload over its limit, so
    a sheet that is slightly soft beats no sheet.
    """
    prefer = prefer.upper()
    if prefer not in ("PNG", "JPEG", "JPG"):
        raise ValueError(f"prefer must be PNG or JPEG, not {prefer!r}")
    img = img.convert("RGB") if img.mode not in ("RGB", "L") else img
    if prefer == "PNG":
        data = _save(img, "PNG")
        if len(data) <= max_bytes:
            return data, "png"
    while True:
        for quality in JPEG_QUALITIES:
            data = _save(img, "JPEG", quality=quality, optimize=True)
            if len(data) <= max_bytes:
                log.info("encoded as JPEG q%d at %dx%d to fit %d bytes", quality, *img.size, max_bytes)
                return data, "jpg"
        if min(img.size) * 3 // 4 < MIN_SIDE:
            raise ImageSearchError(f"The results image cannot be made smaller than {max_bytes} bytes.")
        img = img.resize((img.width * 3 // 4, img.height * 3 // 4), Image.Resampling.LANCZOS)


def _save(img: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def with_title(sheet: Image.Image, title: str) -> Image.Image:
    """The sheet with one line of text above it (e.g. the result order), cut to fit its width."""
    font = _font()
    out = Image.new("RGB", (sheet.width, sheet.height + LINE_HEIGHT + PAD), BACKGROUND)
    out.paste(sheet, (0, LINE_HEIGHT + PAD))
    ImageDraw.Draw(out).text((PAD, PAD), _fit(title, font, sheet.width - 2 * PAD), fill=TEXT, font=font)
    return out
