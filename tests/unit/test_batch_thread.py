"""BatchThread: blocking calls run on its one thread in submission order, calls queued
while it is busy come back together, and an exception reaches its own caller only."""

from __future__ import annotations

import asyncio
import threading

import pytest

from services.common.batch_thread import BatchThread


async def test_calls_queued_while_busy_run_in_order_and_return_together() -> None:
    thread = BatchThread("test-batch")
    release = threading.Event()
    started = threading.Event()
    ran: list[tuple[int, int]] = []

    def blocker() -> str:
        started.set()
        release.wait(10)
        return "unblocked"

    def record(i: int) -> int:
        ran.append((i, threading.get_ident()))
        return i * i

    try:
        first = asyncio.ensure_future(thread.run(blocker))
        assert await asyncio.to_thread(started.wait, 10)
        queued = [asyncio.ensure_future(thread.run(record, i)) for i in range(5)]
        await asyncio.sleep(0)  # every call is on the thread's queue behind the blocker
        release.set()
        assert await first == "unblocked"
        await asyncio.wait(queued, return_when=asyncio.FIRST_COMPLETED)
        # One hand-back for the whole batch: the others finished with the first.
        assert all(task.done() for task in queued)
        assert [task.result() for task in queued] == [0, 1, 4, 9, 16]
        assert [i for i, _ in ran] == [0, 1, 2, 3, 4]
        assert len({ident for _, ident in ran}) == 1
        assert ran[0][1] != threading.get_ident()
    finally:
        await thread.close()


async def test_the_calls_of_one_turn_run_as_one_batch() -> None:
    thread = BatchThread("test-batch")
    try:
        calls = [asyncio.ensure_future(thread.run(abs, -i)) for i in range(4)]
        await asyncio.wait(calls, return_when=asyncio.FIRST_COMPLETED)
        assert all(task.done() for task in calls)
        assert [task.result() for task in calls] == [0, 1, 2, 3]
    finally:
        await thread.close()


async def test_an_exception_reaches_only_its_caller() -> None:
    thread = BatchThread("test-batch")

    def fail() -> None:
        raise FileNotFoundError("gone")

    try:
        results = await asyncio.gather(
            thread.run(int, "1"), thread.run(fail), thread.run(int, "2"), return_exceptions=True
        )
        assert results[0] == 1 and results[2] == 2
        assert isinstance(results[1], FileNotFoundError)
    finally:
        await thread.close()


async def test_close_runs_the_queued_calls_then_refuses_new_ones() -> None:
    thread = BatchThread("test-batch")
    assert await thread.run(sum, [1, 2]) == 3
    pending = asyncio.ensure_future(thread.run(len, "abc"))
    await asyncio.sleep(0)
    await thread.close()
    assert await pending == 3
    with pytest.raises(RuntimeError, match="closed"):
        await thread.run(len, "x")
    await thread.close()  # twice is harmless


async def test_an_unused_thread_is_never_started() -> None:
    before = threading.active_count()
    thread = BatchThread("test-batch")
    assert threading.active_count() == before
    await thread.close()
