"""A fake Discord (REST + gateway + CDN on 127.0.0.1) that the real discord.py client talks to.

See README.md in this folder for the test-facing API.
"""

from tests.fake_discord.models import (
    ATTACH_FILES,
    EMBED_LINKS,
    FakeAttachment,
    FakeGuild,
    FakeInteraction,
    FakeMessage,
    FakeResponse,
    FakeThread,
    FakeUser,
    RecordedFile,
    RecordedRequest,
    permissions_without,
)
from tests.fake_discord.server import FakeDiscord

__all__ = [
    "ATTACH_FILES",
    "EMBED_LINKS",
    "FakeAttachment",
    "FakeDiscord",
    "FakeGuild",
    "FakeInteraction",
    "FakeMessage",
    "FakeResponse",
    "FakeThread",
    "FakeUser",
    "RecordedFile",
    "RecordedRequest",
    "permissions_without",
]
