"""Errors whose text a user may see (terminal or Discord): one sentence, no paths to secrets, no traceback."""

from __future__ import annotations


class ImageSearchError(Exception):
    """Base class: the message is written for the person using the tool."""


class CollectionError(ImageSearchError):
    """The collection folder is missing, incomplete, corrupt, or of an unknown format version."""


class ImageUnavailable(CollectionError):
    """One row's image cannot be shown; the rest of the collection is fine.

    Raised by `Collection.image` and `Collection.thumbnail` for every such case: the row has no
    stored image (a collection built from precomputed embeddings may have none), the file it
    refers to is gone or unreadable, or its bytes do not decode. Callers that show many rows
    (contact sheets, reports) catch this one type and draw a placeholder instead of failing.
    """

    def __init__(self, message: str, row: int) -> None:
        super().__init__(message)
        self.row = row


class ModelMismatchError(CollectionError):
    """The loaded model is not the one the collection was embedded with.

    Searching anyway would compare vectors from two different spaces: silent garbage.
    """


class QueryError(ImageSearchError):
    """The query itself is unusable: empty, too long, a broken or non-image file, bad filters."""


class BuildError(ImageSearchError):
    """A build cannot start or finish: empty source, missing path, unknown model."""


class DeviceError(ImageSearchError):
    """The device asked for (cuda, cuda:N, mps) is not usable on this machine; nothing was loaded."""


class TextModelMismatchError(ModelMismatchError):
    """A text model for prompts (``--text-model``) cannot be loaded, or does not encode into the
    collection's image model's space: its prompts would match images at random."""
