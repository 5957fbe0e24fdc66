"""Shared fixtures: a tiny random-weight CLIP, generated images, and a collection built from them.

Everything is made locally; no test touches the network beyond 127.0.0.1.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# No test may reach a hub: fail fast instead of hanging on a download.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from tests.fixtures.images import SampleImage, make_imagefolder
from tests.fixtures.near_duplicates import make_copies_folder
from tests.fixtures.tiny_clip import build_tiny_clip


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder of a tiny CLIP in sentence-transformers layout; load it with SentenceTransformer(path)."""
    return build_tiny_clip(tmp_path_factory.mktemp("tiny_clip"))


@pytest.fixture(scope="session")
def sample_images(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[SampleImage]]:
    """An imagefolder (year sub-folders, BL names) of 24 distinct JPEGs; treat as read-only."""
    root = tmp_path_factory.mktemp("images")
    return root, make_imagefolder(root, n=24)


@pytest.fixture(scope="session")
def collection_dir(tmp_path_factory: pytest.TempPathFactory, tiny_clip: Path,
                   sample_images: tuple[Path, list[SampleImage]]) -> Path:
    """A collection built from sample_images with the tiny CLIP; treat as read-only."""
    from scripts.build import build_collection

    out = tmp_path_factory.mktemp("collections") / "sample"
    build_collection(str(sample_images[0]), out, model=str(tiny_clip), device="cpu")
    return out


@pytest.fixture(autouse=True)
def _restore_logging():
    """Entry points under test (`bot.__main__.main`) configure process-wide logging: the root level,
    capped library loggers and the redacting record factory. Undo what a test changed so the next
    test starts from the same logging state."""
    import logging

    from bot import redaction

    root = logging.getLogger()
    factory, level, handlers = logging.getLogRecordFactory(), root.level, list(root.handlers)
    named = {name: logging.getLogger(name).level for name in ("discord.http", "discord.webhook.async_",
                                                              "discord.webhook.sync")}
    yield
    if logging.getLogRecordFactory() is not factory:
        redaction.uninstall()
    root.setLevel(level)
    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
    for name, saved in named.items():
        logging.getLogger(name).setLevel(saved)


@pytest.fixture(scope="session")
def tiny_text_model(tmp_path_factory: pytest.TempPathFactory, tiny_clip: Path) -> Path:
    """A multilingual text model distilled from tiny_clip (the real multilingual CLIP's layout)."""
    from tests.fixtures.tiny_text_model import build_tiny_text_model

    return build_tiny_text_model(tmp_path_factory.mktemp("tiny_text_model"), tiny_clip)


@pytest.fixture(scope="session")
def misaligned_text_model(tmp_path_factory: pytest.TempPathFactory, tiny_clip: Path) -> Path:
    """The same architecture with a random Dense layer: CLIP's dimension, another space."""
    from tests.fixtures.tiny_text_model import build_tiny_text_model

    return build_tiny_text_model(tmp_path_factory.mktemp("misaligned_text_model"), tiny_clip, fit=False)


@pytest.fixture(scope="session")
def copies_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 distinct JPEGs, 3 of them also as 4 re-encoded or rescaled copies each (24 files)."""
    root = tmp_path_factory.mktemp("copies")
    make_copies_folder(root)
    return root


@pytest.fixture(scope="session")
def copies_collection(tmp_path_factory: pytest.TempPathFactory, tiny_clip: Path, copies_folder: Path) -> Path:
    """A collection built from copies_folder with the tiny CLIP: 3 groups of 5; treat as read-only."""
    from scripts.build import build_collection

    out = tmp_path_factory.mktemp("collections") / "copies"
    build_collection(str(copies_folder), out, model=str(tiny_clip), device="cpu", progress=False)
    return out
