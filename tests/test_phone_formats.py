"""Phone photos as queries: HEIC/HEIF (pillow-heif) and AVIF, upright, within the usual limits."""

from __future__ import annotations

import io
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from PIL import Image

from search_core.cli import main
from search_core.errors import QueryError
from search_core.images import ACCEPTED_FORMATS, accepted_format_names, load_query_image
from tests.fixtures.images import SampleImage

GREEN, RED = (20, 200, 20), (200, 20, 20)
FORMATS = ("HEIF", "AVIF")


def sideways(size: tuple[int, int] = (64, 32)) -> Image.Image:
    """Stored as a phone stores a portrait shot: landscape pixels, green on the left (the top once
    turned upright by EXIF orientation 6, "rotate 90 degrees clockwise")."""
    img = Image.new("RGB", size, RED)
    img.paste(GREEN, (0, 0, size[0] // 2, size[1]))
    return img


def encode(img: Image.Image, fmt: str, orientation: int | None = None, **kwargs) -> bytes:
    buf = io.BytesIO()
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    img.save(buf, fmt, exif=exif.tobytes(), quality=kwargs.pop("quality", 90), **kwargs)
    return buf.getvalue()


def near(pixel: tuple[int, ...], colour: tuple[int, int, int]) -> bool:
    return all(abs(a - b) < 40 for a, b in zip(pixel, colour))


def test_formats_are_accepted() -> None:
    assert {"HEIF", "AVIF"} <= set(ACCEPTED_FORMATS)
    assert accepted_format_names().endswith("HEIF or AVIF")


@pytest.mark.parametrize("fmt", FORMATS)
def test_phone_photo_decodes(fmt: str) -> None:
    img = load_query_image(encode(sideways(), fmt))
    assert img.mode == "RGB" and img.size == (64, 32)
    assert near(img.getpixel((5, 16)), GREEN) and near(img.getpixel((60, 16)), RED)


@pytest.mark.parametrize("fmt", FORMATS)
def test_exif_rotation_is_applied_once(fmt: str) -> None:
    """A portrait photo is searched upright: turned by its orientation, and not turned twice (HEIF
    files carry the rotation in their own transform, which libheif applies while decoding)."""
    img = load_query_image(encode(sideways(), fmt, orientation=6))
    assert img.size == (32, 64)
    assert near(img.getpixel((16, 5)), GREEN) and near(img.getpixel((16, 60)), RED)


@pytest.mark.parametrize("fmt", FORMATS)
def test_pixel_limit_applies(fmt: str) -> None:
    data = encode(Image.new("RGB", (400, 300), RED), fmt)
    with pytest.raises(QueryError, match="too large .400 x 300 pixels"):
        load_query_image(data, max_pixels=100_000)
    assert load_query_image(data, max_pixels=120_000).size == (400, 300)


@pytest.mark.parametrize("fmt", FORMATS)
def test_byte_limit_applies(fmt: str) -> None:
    data = encode(sideways(), fmt)
    with pytest.raises(QueryError, match="image file is too large"):
        load_query_image(data, max_bytes=len(data) - 1)


@pytest.mark.parametrize("fmt", FORMATS)
def test_damaged_file_is_refused_cleanly(fmt: str) -> None:
    data = encode(sideways((256, 256)), fmt)
    with pytest.raises(QueryError, match="damaged or incomplete|not an image"):
        load_query_image(data[: len(data) // 2])


def test_cli_heic_image_finds_the_original(capsys: pytest.CaptureFixture, collection_dir: Path, tmp_path: Path,
                                           sample_images: tuple[Path, list[SampleImage]]) -> None:
    """--image photo.heic: a collection image re-encoded as HEIC finds itself first."""
    sample = sample_images[1][5]
    photo = tmp_path / "photo.heic"
    with Image.open(sample.path) as img:
        photo.write_bytes(encode(img.convert("RGB"), "HEIF", quality=95))
    assert main(["search", str(collection_dir), "--image", str(photo), "-k", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["hits"][0]["file_name"] == sample.path.name


@pytest.mark.parametrize("content_type", ["image/heic", "image/heif", "image/avif", "image/HEIC; charset=x"])
def test_bot_accepts_phone_attachments(content_type: str) -> None:
    """The bot's pre-download check lets HEIC and AVIF attachments through (and still refuses text)."""
    from bot.cogs.search import check_attachment

    check_attachment(SimpleNamespace(size=1000, content_type=content_type))
    with pytest.raises(QueryError):
        check_attachment(SimpleNamespace(size=1000, content_type="text/plain"))
