"""Vectors a source already holds (`imagesearch build --embeddings-column NAME`): read and check them.

A dataset published with its CLIP embeddings (the seed blog ends with one on the Hub) becomes a
collection without re-embedding: minutes instead of hours on a CPU. What could make it silent
garbage is refused with one sentence naming the first bad row: a column that is missing or not
numeric, vectors of another dimension than the model's (another model made them), rows without a
vector, NaN or infinite values, zero vectors (no direction to search by). Vectors are then
normalised to unit length, as the build's own are.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from search_core.errors import BuildError

# Rows checked per block: bounds the temporary boolean arrays to a few tens of MB at 1M rows.
CHECK_BLOCK_ROWS = 65_536


def vector_column_type(dataset: Any, column: str, source: str) -> pa.DataType:
    """The column's Arrow type, after checking it exists and holds lists of numbers."""
    if column not in dataset.column_names:
        raise BuildError(f"Source {source} has no column {column!r} for --embeddings-column "
                         f"(columns: {', '.join(dataset.column_names)}).")
    kind = dataset.data.schema.field(column).type
    if not (pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)) or not (
            pa.types.is_floating(kind.value_type) or pa.types.is_integer(kind.value_type)):
        raise BuildError(f"Column {column!r} of {source} holds {kind}, not vectors of numbers.")
    return kind


def read_vectors(dataset: Any, column: str, *, dim: int, model: str, order: Sequence[int],
                 names: Sequence[str], source: str) -> np.ndarray:
    """The column as float32 [rows, dim] unit vectors, row i = source row order[i]; BuildError if unusable.

    `names` are the source rows' file names, for messages.
    """
    vector_column_type(dataset, column, source)
    n = len(dataset)
    position = np.empty(n, np.int64)
    position[np.asarray(order, dtype=np.int64)] = np.arange(n)
    out = np.empty((n, dim), np.float32)
    start = 0
    for chunk in dataset.with_format("arrow")[column].chunks:
        out[position[start:start + len(chunk)]] = _chunk_vectors(chunk, start, dim, column, model, names)
        start += len(chunk)
    _check_values(out, position, column, names)
    for lo in range(0, n, CHECK_BLOCK_ROWS):
        block = out[lo:lo + CHECK_BLOCK_ROWS]
        block /= np.linalg.norm(block, axis=1, keepdims=True)
    return out


def _chunk_vectors(chunk: pa.Array, start: int, dim: int, column: str, model: str,
                   names: Sequence[str]) -> np.ndarray:
    """One Arrow chunk of list values as a float32 [len(chunk), dim] array (NaN where a value is null)."""
    if chunk.null_count:
        rows = start + np.flatnonzero(chunk.is_null().to_numpy(zero_copy_only=False))
        raise BuildError(f"{_count(len(rows))} of column {column!r} {'has' if len(rows) == 1 else 'have'} "
                         f"no vector ({_first(rows, names)}); every row needs one.")
    if pa.types.is_fixed_size_list(chunk.type):
        lengths = np.full(len(chunk), chunk.type.list_size)
    else:
        lengths = pc.list_value_length(chunk).to_numpy(zero_copy_only=False)
    wrong = np.flatnonzero(lengths != dim)
    if wrong.size:
        if np.all(lengths == lengths[0]):
            raise BuildError(f"Column {column!r} holds {int(lengths[0])}-dimensional vectors, but the model "
                             f"{model} gives {dim} dimensions: pass the --model that made the vectors.")
        rows = start + wrong
        raise BuildError(f"{_count(len(rows))} of column {column!r} {'has' if len(rows) == 1 else 'have'} "
                         f"a vector of another length than the model's {dim} ({_first(rows, names)}, "
                         f"{int(lengths[wrong[0]])} values).")
    values = chunk.flatten().to_numpy(zero_copy_only=False)
    return values.astype(np.float32, copy=False).reshape(len(chunk), dim)


def _check_values(vectors: np.ndarray, position: np.ndarray, column: str, names: Sequence[str]) -> None:
    """Refuse NaN/infinite values and zero vectors (rows are in collection order; messages name source rows)."""
    source_row = np.argsort(position)
    bad: list[int] = []
    zero: list[int] = []
    for lo in range(0, len(vectors), CHECK_BLOCK_ROWS):
        block = vectors[lo:lo + CHECK_BLOCK_ROWS]
        with np.errstate(over="ignore", invalid="ignore"):
            norms = np.linalg.norm(block, axis=1)       # NaN or inf for any such value, inf on overflow
        bad += (lo + np.flatnonzero(~np.isfinite(norms))).tolist()
        zero += (lo + np.flatnonzero(norms == 0)).tolist()
    if bad:
        rows = np.sort(source_row[bad])
        raise BuildError(f"{_count(len(rows))} of column {column!r} {'holds' if len(rows) == 1 else 'hold'} "
                         f"NaN, infinite or overflowing values ({_first(rows, names)}).")
    if zero:
        rows = np.sort(source_row[zero])
        raise BuildError(f"{_count(len(rows))} of column {column!r} {'is a' if len(rows) == 1 else 'are'} zero "
                         f"vector{'' if len(rows) == 1 else 's'}, with no direction to search by "
                         f"({_first(rows, names)}).")


def _count(rows: int) -> str:
    return "1 row" if rows == 1 else f"{rows:,} rows"


def _first(rows: np.ndarray, names: Sequence[str]) -> str:
    row = int(rows[0])
    return f"{'first: ' if len(rows) > 1 else ''}source row {row}, {names[row]}"
