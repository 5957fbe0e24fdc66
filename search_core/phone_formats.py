"""Phone photos as queries: HEIF/HEIC (iPhones' default) and AVIF.

Pillow 13 reads AVIF itself when built with libavif (the wheels are); HEIF needs the
``pillow-heif`` plugin, registered here once per process. libheif applies a HEIF file's own
rotation and mirroring while decoding, and pillow-heif then resets the EXIF orientation to 1, so
`search_core.images.decode_image`'s EXIF transpose cannot turn an iPhone photo twice. Pixel limits
still apply from the header: both plugins report the size before decoding any pixel.
"""

from __future__ import annotations

import logging
from functools import lru_cache

log = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def register_phone_formats() -> tuple[str, ...]:
    """Register the HEIF opener and report which phone formats this Pillow can decode."""
    from PIL import features

    available = []
    try:
        import pillow_heif

        pillow_heif.register_heif_opener()
        available.append("HEIF")
    except ImportError:
        log.warning("pillow-heif is not installed: HEIC/HEIF images cannot be read")
    if features.check("avif"):
        available.append("AVIF")
    else:
        log.warning("this Pillow has no AVIF support (built without libavif): AVIF images cannot be read")
    return tuple(available)
