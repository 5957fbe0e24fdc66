"""A fake Discord (REST + gateway + CDN on 127.0.0.1) that the real discord.py client talks to.

See README.md in this folder for the test-facing API.
"""

from tests.fake_discord.models import (
    FakeAttachment,
    FakeGuild,
    FakeInteraction,
    FakeMessage,
    FakeResponse,
    FakeUser,
    RecordedFile,
    RecordedRequest,
)
from tests.fake_discord.server import FakeDiscord

__all__ = [
    "FakeAttachment",
    "FakeDiscord",
    "FakeGuild",
    "FakeInteraction",
    "FakeMessage",
    "FakeResponse",
    "FakeUser",
    "RecordedFile",
    "RecordedRequest",
]
