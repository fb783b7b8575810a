"""Coalesces the calls made during one event-loop turn into one batched call.

A gRPC call costs far more than the work of one small item (issue 27: half of
queue_svc's CPU per media job was gRPC's own), and the items of one turn arrive
together anyway (a WebSocket read of several frames, workers finishing together). So
callers hand items to a CallBatcher, which sends whatever gathered by the end of the
current turn as one batch (at most `max_batch`; more go out as several batches at once)
and answers each caller with its own item's result. Nothing waits for a timer: a lone
item leaves as soon as the loop has run what was already ready.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

#: Bytes of items per batch at most when they are measured: gRPC takes messages of up
#: to 4 MiB, and a batch refused for its size would be refused again on every retry.
MAX_BATCH_BYTES = 3 * 1024 * 1024
#: Sends a batch; answers one result per item, in order, or raises for the whole batch.
SendBatch = Callable[[list[Item]], Awaitable[Sequence[Result]]]


class CallBatcher(Generic[Item, Result]):
    def __init__(
        self,
        send: SendBatch[Item, Result],
        *,
        max_batch: int,
        size: Callable[[Item], int] | None = None,
        max_bytes: int = MAX_BATCH_BYTES,
    ) -> None:
        """`size`, when given, measures an item: a batch then also holds at most
        `max_bytes` of items (at least one item), so that it fits in one gRPC message."""
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._send = send
        self._max_batch = max_batch
        self._size = size
        self._max_bytes = max_bytes
        self._pending: list[tuple[Item, asyncio.Future[Result]]] = []
        self._scheduled = False
        self._sending: set[asyncio.Task[None]] = set()

    async def call(self, item: Item) -> Result:
        """This item's result (or the batch's exception)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Result] = loop.create_future()
        self._pending.append((item, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return await future

    async def close(self) -> None:
        """Waits for the batches already sent."""
        while self._sending or self._pending:
            if self._pending and not self._scheduled:
                self._flush()
            await asyncio.gather(*self._sending, return_exceptions=True)
            if self._pending:
                await asyncio.sleep(0)  # the scheduled flush runs first

    def _flush(self) -> None:
        self._scheduled = False
        pending, self._pending = self._pending, []
        for batch in self._batches(pending):
            task = asyncio.create_task(self._run(batch))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    def _batches(
        self, pending: list[tuple[Item, asyncio.Future[Result]]]
    ) -> list[list[tuple[Item, asyncio.Future[Result]]]]:
        size = self._size
        if size is None:
            step = self._max_batch
            return [pending[start : start + step] for start in range(0, len(pending), step)]
        batches: list[list[tuple[Item, asyncio.Future[Result]]]] = []
        batch: list[tuple[Item, asyncio.Future[Result]]] = []
        total = 0
        for entry in pending:
            item_size = size(entry[0])
            if batch and (len(batch) == self._max_batch or total + item_size > self._max_bytes):
                batches.append(batch)
                batch, total = [], 0
            batch.append(entry)
            total += item_size
        if batch:
            batches.append(batch)
        return batches

    async def _run(self, batch: list[tuple[Item, asyncio.Future[Result]]]) -> None:
        try:
            results = await self._send([item for item, _ in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"{len(results)} results for a batch of {len(batch)}")
        except Exception as error:
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        except BaseException:
            # Cancelled (the loop is shutting down): so are its waiters.
            for _, future in batch:
                future.cancel()
            raise
        for (_, future), result in zip(batch, results, strict=True):
            # A waiter that was cancelled (its frame's socket closed) needs nothing.
            with contextlib.suppress(asyncio.InvalidStateError):
                future.set_result(result)
