"""Short blocking calls (unlink, rename, stat) on one thread of their own, in batches.

`asyncio.to_thread` pays two thread hand-offs per call: waking an executor thread, and
waking the event loop with the result. With several calls per media job that was as much
CPU as the event loop itself (the media bench: the default executor's threads used
~40 % of media_svc's CPU). Here the calls of one event-loop turn are handed to the
thread together, and the thread runs every call queued since its last wake-up and hands
all their results back with one loop wake-up: under load the hand-offs are paid per
batch, not per call. For short calls only: a call waits for those queued before
it, so a long copy here would hold back every other job's file operations.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ParamSpec, Protocol, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

# Bounds one batch (beyond one turn's calls), so results of a long queue reach the loop
# in portions.
MAX_BATCH = 256


class Offload(Protocol):
    """Where a blocking call runs: `asyncio.to_thread`, or `BatchThread.run`."""

    def __call__(
        self, func: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
    ) -> Awaitable[T]: ...


@dataclass(slots=True)
class _Call:
    run: Callable[[], Any]
    future: asyncio.Future[Any]


class BatchThread:
    """Called from one event loop (the service's); results go back to the caller's loop."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._calls: queue.SimpleQueue[list[_Call] | None] = queue.SimpleQueue()
        # The calls of the current event-loop turn: handed over together at its end, so
        # a turn that starts many calls wakes the thread once.
        self._turn: list[_Call] = []
        self._thread: threading.Thread | None = None
        self._closed = False

    async def run(self, func: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """`func(*args, **kwargs)` on the thread; its result or its exception. A caller
        cancelled meanwhile does not stop a call already queued (as with to_thread)."""
        if self._closed:
            raise RuntimeError(f"{self._name} is closed")
        if self._thread is None:
            # Started on first use: an instance nobody calls costs no thread.
            self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
            self._thread.start()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        if not self._turn:
            loop.call_soon(self._hand_over)
        self._turn.append(_Call(lambda: func(*args, **kwargs), future))
        return await future

    def _hand_over(self) -> None:
        calls, self._turn = self._turn, []
        if calls:
            self._calls.put(calls)

    async def close(self) -> None:
        """Runs the calls already queued, then ends the thread."""
        if self._closed:
            return
        self._closed = True
        if self._thread is not None:
            self._hand_over()
            self._calls.put(None)
            await asyncio.get_running_loop().run_in_executor(None, self._thread.join)

    def _loop(self) -> None:
        stopping = False
        while not stopping:
            first = self._calls.get()
            if first is None:
                break
            batch = first
            while len(batch) < MAX_BATCH:
                try:
                    more = self._calls.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stopping = True
                    break
                batch.extend(more)
            done: dict[asyncio.AbstractEventLoop, list[tuple[_Call, Any, BaseException | None]]]
            done = {}
            for call in batch:
                try:
                    outcome: tuple[_Call, Any, BaseException | None] = (call, call.run(), None)
                except BaseException as exc:  # the caller's to handle, as with to_thread
                    outcome = (call, None, exc)
                done.setdefault(call.future.get_loop(), []).append(outcome)
            for loop, outcomes in done.items():
                # RuntimeError: the caller's loop is closed; nobody is waiting any more.
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(_resolve, outcomes)


def _resolve(outcomes: list[tuple[_Call, Any, BaseException | None]]) -> None:
    for call, value, error in outcomes:
        if call.future.done():  # cancelled by its caller
            continue
        if error is not None:
            call.future.set_exception(error)
        else:
            call.future.set_result(value)
