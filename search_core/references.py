"""Read the images of a collection built with ``--images reference``: paths under an image root, or URLs.

Such a collection stores where each image is (a path relative to the manifest's `ImageRoot`, or an
http(s) URL) instead of its bytes. The root is found at open, first match wins:
1. each folder of IMAGESEARCH_IMAGE_ROOT (several separated by ``os.pathsep``, so one setting serves
   several collections: each takes the first folder holding its own files);
2. the root relative to the collection folder (the collection and its images moved together);
3. the root's absolute path as the build saw it (only the collection moved).
"Holding its files" is checked on a few sample rows. When no candidate holds any of them, the first
existing folder is used (or the recorded one), and the rows read as missing: placeholders in a
contact sheet, a line in the log, and `imagesearch verify` lists them.
"""

from __future__ import annotations

import logging
import os
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath

from search_core.layout import ImageRoot

log = logging.getLogger(__name__)

IMAGE_ROOT_ENV = "IMAGESEARCH_IMAGE_ROOT"
URL_TIMEOUT_S = 10.0
# The largest image read from a URL; the decoder's own pixel limit stops a bomb after this.
MAX_URL_BYTES = 64 * 2**20


class UnreadableReference(OSError):
    """A referenced image that cannot be read now; the message is a short reason for users."""


def is_url(reference: str) -> bool:
    return reference.startswith(("http://", "https://"))


def roots_from_env(env: Mapping[str, str] | None = None) -> list[Path]:
    """The folders named by IMAGESEARCH_IMAGE_ROOT, in order (empty when unset)."""
    value = (os.environ if env is None else env).get(IMAGE_ROOT_ENV, "")
    return [Path(part).expanduser() for part in value.split(os.pathsep) if part.strip()]


def candidate_roots(collection: Path, root: ImageRoot, overrides: Sequence[Path] = ()) -> list[Path]:
    """Where the images may be now, in the order tried (module docstring)."""
    found = [Path(p) for p in overrides]
    if root.relative is not None:
        found.append(Path(os.path.normpath(Path(collection).absolute() / root.relative)))
    found.append(Path(root.absolute))
    unique: list[Path] = []
    for path in found:
        if path not in unique:
            unique.append(path)
    return unique


def resolve_root(collection: Path, root: ImageRoot, samples: Sequence[str], overrides: Sequence[Path] = ()) -> Path:
    """The first candidate holding one of the sample references; else the first existing folder;
    else the recorded absolute root (every image then reads as missing)."""
    candidates = candidate_roots(collection, root, overrides)
    local = [s for s in samples if s and not is_url(s)]
    for candidate in candidates:
        if any((candidate / _relative(s)).is_file() for s in local):
            return candidate
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    return Path(root.absolute)


def _relative(reference: str) -> PurePosixPath:
    path = PurePosixPath(reference)
    if path.is_absolute() or ".." in path.parts:
        raise UnreadableReference(f"its reference {reference!r} is not a path inside the image folder")
    return path


def local_path(root: Path | None, reference: str) -> Path:
    """The file a relative reference names under root."""
    if root is None:
        raise UnreadableReference("the collection records no image folder")
    return Path(root) / _relative(reference)


def read_reference(root: Path | None, reference: str) -> bytes:
    """The bytes of one referenced image; UnreadableReference with a short reason otherwise."""
    if is_url(reference):
        return _read_url(reference)
    path = local_path(root, reference)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise UnreadableReference(f"its file {reference} is missing from {root}") from None
    except OSError as exc:
        raise UnreadableReference(f"its file {reference} under {root} cannot be read "
                                  f"({exc.strerror or type(exc).__name__})") from None


def _read_url(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=URL_TIMEOUT_S) as response:
            data = response.read(MAX_URL_BYTES + 1)
    except OSError as exc:   # URLError, HTTPError and timeouts are OSErrors
        reason = getattr(exc, "reason", None) or getattr(exc, "code", None) or type(exc).__name__
        raise UnreadableReference(f"its URL {url} cannot be read ({reason})") from None
    if len(data) > MAX_URL_BYTES:
        raise UnreadableReference(f"its URL {url} holds more than {MAX_URL_BYTES // 2**20} MiB")
    return data
