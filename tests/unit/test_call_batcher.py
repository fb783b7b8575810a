"""CallBatcher: the calls of one event-loop turn leave as one batch, each caller gets
its own item's result, and a failed batch fails every caller in it."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from services.common.call_batcher import CallBatcher


class Recorder:
    def __init__(self, fail: Exception | None = None) -> None:
        self.batches: list[list[int]] = []
        self.fail = fail

    async def send(self, items: list[int]) -> Sequence[str]:
        self.batches.append(items)
        await asyncio.sleep(0)  # a real call yields to the loop
        if self.fail is not None:
            raise self.fail
        return [f"r{i}" for i in items]


async def test_calls_of_one_turn_go_out_as_one_batch_in_order() -> None:
    recorder = Recorder()
    batcher = CallBatcher(recorder.send, max_batch=100)
    results = await asyncio.gather(*(batcher.call(i) for i in range(5)))
    assert results == ["r0", "r1", "r2", "r3", "r4"]
    assert recorder.batches == [[0, 1, 2, 3, 4]]
    # A later turn is a new batch.
    assert await batcher.call(9) == "r9"
    assert recorder.batches[-1] == [9]


async def test_a_large_turn_is_split_at_max_batch() -> None:
    recorder = Recorder()
    batcher = CallBatcher(recorder.send, max_batch=3)
    results = await asyncio.gather(*(batcher.call(i) for i in range(7)))
    assert results == [f"r{i}" for i in range(7)]
    assert recorder.batches == [[0, 1, 2], [3, 4, 5], [6]]


async def test_a_failed_batch_fails_each_of_its_callers() -> None:
    recorder = Recorder(fail=ConnectionError("down"))
    batcher = CallBatcher(recorder.send, max_batch=10)
    outcomes = await asyncio.gather(*(batcher.call(i) for i in range(3)), return_exceptions=True)
    assert all(isinstance(o, ConnectionError) for o in outcomes)
    recorder.fail = None
    assert await batcher.call(1) == "r1"  # the next turn is unaffected


async def test_a_wrong_number_of_results_fails_the_batch() -> None:
    async def short(items: list[int]) -> Sequence[str]:
        return ["only one"]

    batcher = CallBatcher(short, max_batch=10)
    outcomes = await asyncio.gather(batcher.call(1), batcher.call(2), return_exceptions=True)
    assert all(isinstance(o, RuntimeError) for o in outcomes)


async def test_a_cancelled_caller_leaves_the_others_their_results() -> None:
    recorder = Recorder()
    batcher = CallBatcher(recorder.send, max_batch=10)
    first = asyncio.create_task(batcher.call(1))
    second = asyncio.create_task(batcher.call(2))
    await asyncio.sleep(0)  # both are queued, the flush is scheduled
    first.cancel()
    assert await second == "r2"
    with pytest.raises(asyncio.CancelledError):
        await first
    await batcher.close()
    assert recorder.batches == [[1, 2]]


def test_max_batch_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_batch"):
        CallBatcher(Recorder().send, max_batch=0)


async def test_measured_items_are_split_at_max_bytes_as_well() -> None:
    # Items are their own sizes here: 60 + 50 > 100 starts a new batch; an item larger
    # than the bound still leaves, alone.
    recorder = Recorder()
    batcher = CallBatcher(recorder.send, max_batch=3, size=lambda item: item, max_bytes=100)
    sizes = [60, 50, 10, 10, 10, 10, 150, 1]
    results = await asyncio.gather(*(batcher.call(i) for i in sizes))
    assert results == [f"r{i}" for i in sizes]
    assert recorder.batches == [[60], [50, 10, 10], [10, 10], [150], [1]]
