"""`--push-to-hub REPO`: share a finished collection the way the seed does.

The pushed dataset is the collection's rows plus an ``embeddings`` column, so anyone can
``load_dataset(REPO)`` and call ``add_faiss_index(column="embeddings")`` as in the seed blog.
Pushed from the finished collection folder, so a failed upload never costs the build.
"""

from __future__ import annotations

import logging
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa

from search_core import layout
from search_core.errors import BuildError

log = logging.getLogger(__name__)


def with_embeddings(collection: Path) -> datasets.Dataset:
    """The collection's dataset with its embeddings as a fixed-length float32 list column."""
    collection = Path(collection)
    dataset = datasets.load_from_disk(str(collection / layout.DATASET_DIR))
    vectors = np.load(collection / layout.EMBEDDINGS, mmap_mode="r")
    if len(vectors) != len(dataset):
        raise BuildError(f"Collection {collection} is inconsistent: {len(vectors)} embeddings "
                         f"for {len(dataset)} rows.")
    column = pa.FixedSizeListArray.from_arrays(
        pa.array(np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1)), vectors.shape[1])
    embeddings = datasets.Dataset(pa.table({"embeddings": column}))
    return datasets.concatenate_datasets([dataset, embeddings], axis=1)


def check_pushable(storage: str) -> None:
    """BuildError for a collection that only references its images: pushed, it would hold paths
    into a folder on this machine that nobody who downloads it can read."""
    if storage == layout.STORAGE_REFERENCE:
        raise BuildError("--push-to-hub needs the images inside the collection, and this one only references "
                         "them (--images reference): build it with --images copy to push it.")


def push_collection(collection: Path, repo: str) -> None:
    """Push as a private Hub dataset (the seed's ``push_to_hub(repo, private=True)``)."""
    check_pushable(layout.Manifest.read(collection).storage)
    dataset = with_embeddings(collection)
    log.info("pushing %d rows to the Hub dataset %s", len(dataset), repo)
    try:
        dataset.push_to_hub(repo, private=True)
    except Exception as exc:
        raise BuildError(f"The collection was built at {collection}, but pushing it to {repo} failed: "
                         f"{type(exc).__name__}: {exc}") from exc
