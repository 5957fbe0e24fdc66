"""Errors whose text a user may see (terminal or Discord): one sentence, no paths to secrets, no traceback."""

from __future__ import annotations


class ImageSearchError(Exception):
    """Base class: the message is written for the person using the tool."""


class CollectionError(ImageSearchError):
    """The collection folder is missing, incomplete, corrupt, or of an unknown format version."""


class ModelMismatchError(CollectionError):
    """The loaded model is not the one the collection was embedded with.

    Searching anyway would compare vectors from two different spaces: silent garbage.
    """


class QueryError(ImageSearchError):
    """The query itself is unusable: empty, too long, a broken or non-image file, bad filters."""


class BuildError(ImageSearchError):
    """A build cannot start or finish: empty source, missing path, unknown model."""
