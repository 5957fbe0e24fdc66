"""Which encoded images the GPU's JPEG decoder takes, and which go to the CPU decoder (pure).

nvJPEG gives 26,000-30,000 images/s on plain baseline JPEGs (anchors/gpu_decode_results.md), and
only the CPU decoder (`search_core.images.decode_image`) knows this project's rules: EXIF
rotation, 16-bit scaling, transparency on white, the pixel limit, the skip reasons. So the GPU
gets a file only where nvJPEG gives the pixels `decode_image` would, read from the JPEG header
(a few hundred bytes, no decoding); everything else goes to the CPU decoder:

- not a JPEG at all (PNG, TIFF, GIF, WebP, BMP, anything unreadable);
- not a baseline 8-bit JPEG: progressive (torchvision hands those to nvJPEG's software path one
  at a time, under the decoder's lock, stalling the batch), lossless, arithmetic, 12-bit;
- colour nvJPEG would misread: 4 components (CMYK, YCCK), or 3 stored as RGB rather than YCbCr
  (Adobe transform 0, or component ids "R", "G", "B");
- an EXIF orientation other than 1 (or, with no EXIF one, an XMP ``tiff:Orientation``, which
  Pillow also honours): `decode_image` turns the image upright;
- no end-of-image marker as the last bytes: a truncated file, which Pillow refuses and nvJPEG may
  decode with a grey tail;
- more pixels than the build's limit (`decode_image` refuses it with today's reason), a zero
  size, a multi-picture (MPO) file, or a header that does not parse.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

from search_core.images import MAX_SOURCE_PIXELS

_SOI = b"\xff\xd8\xff"
_EOI = b"\xff\xd9"
_SOS = 0xDA
_BASELINE = 0xC0
# Start-of-frame markers (C0-CF), except DHT (C4), JPG (C8) and DAC (CC).
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_STANDALONE = frozenset([0x01, *range(0xD0, 0xD8)])   # TEM and RSTn carry no length
_ORIENTATION_TAG = 0x0112
_XMP_PREFIX = b"http://ns.adobe.com/xap/1.0/\x00"
# Pillow's own pattern (Image.getexif), used when the EXIF block has no orientation.
_XMP_ORIENTATION = re.compile(rb'tiff:Orientation(="|>)([0-9])')
_RGB_COMPONENT_IDS = (ord("R"), ord("G"), ord("B"))


@dataclass(frozen=True)
class Route:
    """Where one file is decoded, and why the CPU when it is not the GPU."""

    gpu: bool
    reason: str = ""      # for the CPU: a short phrase, counted in the build's log and the benchmark
    width: int = 0        # from the JPEG header (0 when not parsed)
    height: int = 0


class _Malformed(Exception):
    pass


def route(data: bytes, *, max_pixels: int = MAX_SOURCE_PIXELS) -> Route:
    """GPU for a plain baseline JPEG that nvJPEG decodes exactly as `decode_image` would; else CPU."""
    if not data.startswith(_SOI):
        return Route(False, "not a JPEG")
    if not data.endswith(_EOI):
        return Route(False, "no end-of-image marker")
    try:
        header = _read_header(data)
    except (_Malformed, struct.error, IndexError):
        return Route(False, "unparsed JPEG header")
    if header.sof is None:
        return Route(False, "no frame header")
    width, height = header.width, header.height
    if header.sof != _BASELINE or header.precision != 8:
        return Route(False, "progressive or other non-baseline JPEG", width, height)
    colours = len(header.components)
    if colours == 4:
        return Route(False, "CMYK or other 4-component JPEG", width, height)
    if colours not in (1, 3):
        return Route(False, "unsupported colour components", width, height)
    if colours == 3 and (header.adobe_transform == 0 or header.components == _RGB_COMPONENT_IDS):
        return Route(False, "RGB-coded JPEG", width, height)
    if header.orientation != 1:
        return Route(False, "EXIF orientation", width, height)
    if header.multi_picture:
        return Route(False, "multi-picture (MPO) JPEG", width, height)
    if width < 1 or height < 1:
        return Route(False, "no size in the frame header", width, height)
    if width * height > max_pixels:
        return Route(False, "over the pixel limit", width, height)
    return Route(True, "", width, height)


@dataclass
class _Header:
    sof: int | None = None
    precision: int = 0
    width: int = 0
    height: int = 0
    components: tuple[int, ...] = ()
    adobe_transform: int | None = None
    orientation: int | None = 1      # None: present but unreadable
    multi_picture: bool = False


def _read_header(data: bytes) -> _Header:
    header = _Header()
    exif_blocks = 0
    exif_orientation: int | None | str = "absent"
    xmp_orientation: int | None = None
    for marker, payload in _segments(data):
        if marker in _SOF and header.sof is None:
            header.sof = marker
            header.precision = payload[0]
            header.height, header.width = struct.unpack(">HH", payload[1:5])
            count = payload[5]
            header.components = tuple(payload[6 + 3 * i] for i in range(count))
        elif marker == 0xE1 and payload[:6] == b"Exif\x00\x00":
            exif_blocks += 1
            exif_orientation = _exif_orientation(bytes(payload[6:]))
        elif marker == 0xE1 and payload[:len(_XMP_PREFIX)] == _XMP_PREFIX:
            match = _XMP_ORIENTATION.search(bytes(payload[len(_XMP_PREFIX):]))
            xmp_orientation = int(match[2]) if match else None
        elif marker == 0xEE and payload[:5] == b"Adobe" and len(payload) > 11:
            header.adobe_transform = payload[11]
        elif marker == 0xE2 and payload[:4] == b"MPF\x00":
            header.multi_picture = True
    if exif_blocks > 1:
        header.orientation = None     # Pillow joins several EXIF blocks: not worth reading here
    elif exif_orientation == "absent":
        header.orientation = xmp_orientation if xmp_orientation is not None else 1
    else:
        header.orientation = exif_orientation  # type: ignore[assignment]
    return header


def _segments(data: bytes):
    """(marker, payload) of each header segment up to and including the start of scan."""
    view = memoryview(data)
    i, n = 2, len(data)
    while i < n:
        if data[i] != 0xFF:
            raise _Malformed("expected a marker")
        while i < n and data[i] == 0xFF:   # fill bytes
            i += 1
        if i >= n:
            raise _Malformed("ends in fill bytes")
        marker = data[i]
        i += 1
        if marker in _STANDALONE:
            continue
        if marker == 0xD9:
            return
        if i + 2 > n:
            raise _Malformed("truncated segment length")
        length = (data[i] << 8) | data[i + 1]
        if length < 2 or i + length > n:
            raise _Malformed("segment runs past the end")
        yield marker, view[i + 2:i + length]
        if marker == _SOS:
            return
        i += length


def _exif_orientation(tiff: bytes) -> int | None | str:
    """The Orientation tag of IFD0: its value, "absent", or None when the block does not parse
    the simple way (then the CPU decoder, which reads it as Pillow does, takes the file)."""
    try:
        order = {b"II": "<", b"MM": ">"}[tiff[:2]]
        magic, offset = struct.unpack(order + "HI", tiff[2:8])
        if magic != 42:
            return None
        (count,) = struct.unpack(order + "H", tiff[offset:offset + 2])
        for k in range(count):
            entry = tiff[offset + 2 + 12 * k:offset + 14 + 12 * k]
            tag, kind, n = struct.unpack(order + "HHI", entry[:8])
            if tag != _ORIENTATION_TAG:
                continue
            if n != 1:
                return None
            if kind == 3:      # SHORT
                return struct.unpack(order + "H", entry[8:10])[0]
            if kind == 4:      # LONG
                return struct.unpack(order + "I", entry[8:12])[0]
            if kind == 1:      # BYTE
                return entry[8]
            return None
        return "absent"
    except (KeyError, struct.error, IndexError):
        return None
