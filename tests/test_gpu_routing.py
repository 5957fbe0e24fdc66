"""scripts.gpu.routing: nvJPEG gets only the files it decodes as the CPU decoder would."""

from __future__ import annotations

import random
import struct

import pytest

from scripts.decode import UnusableImage, decode
from scripts.gpu.routing import route
from tests.fixtures.encodings import BROKEN_KINDS, GPU_KINDS, KINDS, jpeg


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_each_kind_goes_where_it_is_decoded_right(kind: str) -> None:
    """Plain baseline JPEGs (colour or grey, any subsampling, EXIF saying 'upright') go to the GPU;
    everything the CPU decoder treats specially, or that nvJPEG would read differently, does not."""
    data = KINDS[kind](11)
    assert route(data).gpu == (kind in GPU_KINDS), route(data)


@pytest.mark.parametrize("kind", sorted(BROKEN_KINDS))
def test_broken_files_go_to_the_decoder_that_lists_them(kind: str) -> None:
    data = KINDS[kind](3)
    assert not route(data).gpu
    with pytest.raises(UnusableImage):
        decode(data)


def test_gpu_route_carries_the_header_size() -> None:
    """The decoded tensor is checked against these, so a wrong size from nvJPEG is caught."""
    r = route(jpeg(1, (123, 45)))
    assert (r.gpu, r.width, r.height) == (True, 123, 45)


@pytest.mark.parametrize("orientation", range(2, 9))
def test_every_rotating_orientation_goes_to_the_cpu(orientation: int) -> None:
    from tests.fixtures.encodings import exif_rotated_jpeg

    r = route(exif_rotated_jpeg(2, (40, 30), orientation=orientation))
    assert not r.gpu and "orientation" in r.reason


def _with_segment(data: bytes, marker: int, payload: bytes) -> bytes:
    """Insert an APPn segment right after SOI."""
    return data[:2] + bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload + data[2:]


def _replace_sof(data: bytes, *, marker: int | None = None, precision: int | None = None,
                 size: tuple[int, int] | None = None) -> bytes:
    i = data.index(b"\xff\xc0")
    out = bytearray(data)
    if marker is not None:
        out[i + 1] = marker
    if precision is not None:
        out[i + 4] = precision
    if size is not None:
        out[i + 5:i + 9] = struct.pack(">HH", size[1], size[0])
    return bytes(out)


def test_exif_that_does_not_parse_goes_to_the_cpu() -> None:
    assert not route(_with_segment(jpeg(1, (40, 30)), 0xE1, b"Exif\x00\x00XX garbage")).gpu


def test_two_exif_blocks_go_to_the_cpu() -> None:
    """Pillow joins them; reading them apart could miss the orientation."""
    from tests.fixtures.encodings import exif_upright_jpeg

    data = exif_upright_jpeg(1, (40, 30))
    start = data.index(b"Exif\x00\x00") - 4
    length = struct.unpack(">H", data[start + 2:start + 4])[0]
    assert not route(data[:2] + data[start:start + 2 + length] + data[2:]).gpu


def test_xmp_orientation_counts_only_without_an_exif_one() -> None:
    """As Pillow reads it: EXIF orientation 1 wins over an XMP 8."""
    from tests.fixtures.encodings import exif_upright_jpeg

    xmp = b"http://ns.adobe.com/xap/1.0/\x00" + b'<x tiff:Orientation="8"/>'
    assert not route(_with_segment(jpeg(1, (40, 30)), 0xE1, xmp)).gpu
    assert route(_with_segment(exif_upright_jpeg(1, (40, 30)), 0xE1, xmp)).gpu
    upright = b"http://ns.adobe.com/xap/1.0/\x00" + b'<x tiff:Orientation="1"/>'
    assert route(_with_segment(jpeg(1, (40, 30)), 0xE1, upright)).gpu


@pytest.mark.parametrize("change,reason", [
    ({"marker": 0xC1}, "non-baseline"),          # extended sequential
    ({"marker": 0xC3}, "non-baseline"),          # lossless
    ({"marker": 0xC9}, "non-baseline"),          # arithmetic
    ({"precision": 12}, "non-baseline"),
    ({"size": (0, 30)}, "no size"),
    ({"size": (20_000, 20_000)}, "pixel limit"),
])
def test_frames_nvjpeg_should_not_take(change: dict, reason: str) -> None:
    r = route(_replace_sof(jpeg(1, (40, 30)), **change))
    assert not r.gpu and reason in r.reason


def test_the_pixel_limit_is_the_builds() -> None:
    data = jpeg(1, (40, 30))
    assert route(data, max_pixels=1200).gpu
    assert not route(data, max_pixels=1199).gpu


def test_multi_picture_and_rgb_component_ids_go_to_the_cpu() -> None:
    assert not route(_with_segment(jpeg(1, (40, 30)), 0xE2, b"MPF\x00" + b"\x00" * 8)).gpu
    data = jpeg(1, (40, 30))
    sof = data.index(b"\xff\xc0")
    ids = bytearray(data)
    for k, cid in enumerate(b"RGB"):
        ids[sof + 10 + 3 * k] = cid
    assert not route(bytes(ids)).gpu


def test_bytes_after_the_end_marker_go_to_the_cpu() -> None:
    """Pillow accepts trailing junk; nvJPEG need not, and no file is worth the doubt."""
    assert not route(jpeg(1, (40, 30)) + b"\x00\x00").gpu


def test_routing_never_raises_on_damaged_headers() -> None:
    """Truncated, bit-flipped and random headers: every one gets a route, none an exception."""
    rng = random.Random(0)
    base = jpeg(5, (64, 48))
    header_end = base.index(b"\xff\xda") + 20
    for _ in range(2000):
        data = bytearray(base)
        for _ in range(rng.randint(1, 6)):
            data[rng.randrange(2, header_end)] = rng.randrange(256)
        cut = rng.choice([len(data), rng.randrange(3, header_end)])
        r = route(bytes(data[:cut]) + b"\xff\xd9")
        assert isinstance(r.gpu, bool)
    for _ in range(500):
        route(b"\xff\xd8\xff" + bytes(rng.randrange(256) for _ in range(rng.randrange(60))) + b"\xff\xd9")
