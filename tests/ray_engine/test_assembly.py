"""scripts.ray_engine.assembly: parts in any order become the build's shards, each handed over once."""

from __future__ import annotations

import numpy as np

from scripts.ray_engine.assembly import ShardAssembler
from scripts.ray_engine.parts import Part

DIM = 3
KEYS = np.array([100 + 7 * i for i in range(10)], np.uint64)     # job entry i has key KEYS[i]


def vec(i: int) -> np.ndarray:
    return np.full(DIM, float(i), np.float32)


def part(indices, skipped=()) -> Part:
    return Part(keys=KEYS[list(indices)], vectors=np.stack([vec(i) for i in indices]) if indices else
                np.zeros((0, DIM), np.float32),
                skipped_keys=KEYS[[i for i, _ in skipped]], skipped_reasons=[r for _, r in skipped])


def assembler(shards=(0, 1, 2), size=4):
    written = {}

    def write(shard, indices, vectors, skipped):
        assert shard not in written, "a shard is handed over once"
        written[shard] = (indices.tolist(), vectors, skipped)

    return ShardAssembler(KEYS, size, list(shards), write, DIM), written


def test_parts_out_of_order_make_whole_shards_in_entry_order():
    asm, written = assembler()
    asm.add(part([9, 2, 5]))
    asm.add(part([8], skipped=[(0, "empty file")]))
    assert list(written) == [2] and asm.missing().tolist() == [1, 3, 4, 6, 7]   # shard 2 is whole already
    asm.add(part([3, 1, 7, 6], skipped=[(4, "not an image file")]))
    assert sorted(written) == [0, 1, 2] and asm.done
    indices, vectors, skipped = written[0]
    assert indices == [1, 2, 3] and skipped == [(0, "empty file")]
    assert np.array_equal(vectors, np.stack([vec(1), vec(2), vec(3)]))
    assert written[1][0] == [5, 6, 7] and written[1][2] == [(4, "not an image file")]
    assert written[2][0] == [8, 9]                              # the last shard is short
    assert asm.embedded == 8 and asm.written == 3


def test_rows_seen_twice_and_foreign_keys_count_once():
    asm, written = assembler(shards=(0,))
    assert asm.add(part([0, 1])) == 2
    assert asm.add(part([1, 2])) == 1                           # 1 again: a retried batch
    assert asm.add(Part(keys=np.array([5], np.uint64), vectors=np.ones((1, DIM), np.float32),
                        skipped_keys=np.zeros(0, np.uint64), skipped_reasons=[])) == 0   # not in the job
    asm.add(part([3]))
    assert written[0][0] == [0, 1, 2, 3] and np.array_equal(written[0][1][1], vec(1))


def test_shards_already_written_take_nothing():
    """Only the shards asked for are assembled; rows of the others are ignored."""
    asm, written = assembler(shards=(1,))
    asm.add(part([0, 1, 4, 5, 6, 7]))
    assert list(written) == [1] and asm.done


def test_rows_no_part_brought_can_be_listed_as_skipped():
    asm, written = assembler(shards=(0,))
    asm.add(part([0, 2]))
    asm.skip_missing("file not found")
    assert written[0][0] == [0, 2] and written[0][2] == [(1, "file not found"), (3, "file not found")]


def test_a_shard_of_only_skipped_rows_has_no_vectors():
    asm, written = assembler(shards=(2,))
    asm.add(part([], skipped=[(8, "empty file"), (9, "empty file")]))
    assert written[2][0] == [] and written[2][1].shape == (0, DIM)
