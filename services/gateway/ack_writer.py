"""Writes acknowledgements to one Node connection: one WebSocket message per ack, or,
on a connection that negotiated frame batches, the acks of one event-loop turn as one
message (services/common/wire_batch.py)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from chatbot.wire.v1 import frames_pb2 as w

from services.common.wire import encode_frame
from services.common.wire_batch import join_frames
from services.gateway.node_link import FrameSocket

log = logging.getLogger(__name__)


class AckWriter:
    def __init__(
        self,
        socket: FrameSocket,
        *,
        batched: bool,
        on_sent: Callable[[w.AckStatus.ValueType, int], None],
    ) -> None:
        self._socket = socket
        self._batched = batched
        self._on_sent = on_sent
        self._lock = asyncio.Lock()
        # (encoded ack, its status) waiting for the next batch
        self._queued: list[tuple[str, w.AckStatus.ValueType]] = []
        self._flushing: asyncio.Task[None] | None = None

    @property
    def batched(self) -> bool:
        return self._batched

    async def send(self, reply: w.GatewayFrame) -> None:
        """Sends one ack; on a batching connection it only queues it for the batch, whose
        write happens once the current turn's other acks joined it."""
        text = encode_frame(reply)
        if not self._batched:
            async with self._lock:
                await self._socket.send_str(text)
            self._on_sent(reply.ack.status, 1)
            return
        self._queued.append((text, reply.ack.status))
        if self._flushing is None:
            self._flushing = asyncio.create_task(self._flush())

    def queue(self, text: str, status: w.AckStatus.ValueType) -> None:
        """`send` of an encoded ack on a batching connection, without a coroutine: the
        ack joins the next batch."""
        assert self._batched, "only a batching connection queues acks"
        self._queued.append((text, status))
        if self._flushing is None:
            self._flushing = asyncio.create_task(self._flush())

    async def _flush(self) -> None:
        # The task starts after the callbacks already due in this turn: every frame
        # task finishing in it has queued its ack by then. Acks queued while a batch is
        # being written join the next one.
        batch: list[tuple[str, w.AckStatus.ValueType]] = []
        try:
            while self._queued:
                batch, self._queued = self._queued, []
                await self._socket.send_str(join_frames([text for text, _ in batch]))
                # Counted per status, not per ack: a batch holds hundreds at saturation.
                sent: dict[w.AckStatus.ValueType, int] = {}
                for _, status in batch:
                    sent[status] = sent.get(status, 0) + 1
                for status, count in sent.items():
                    self._on_sent(status, count)
        except (ConnectionError, RuntimeError) as error:
            # Node resends every unacknowledged frame after reconnecting.
            lost = len(batch) + len(self._queued)
            log.info("could not acknowledge %d frames, connection gone: %r", lost, error)
            self._queued.clear()
        except Exception:
            # Nobody awaits this task but the connection's end: a failure of its own must
            # not stop the connection's cleanup. Node resends what got no ack.
            log.exception("could not acknowledge %d frames", len(batch) + len(self._queued))
            self._queued.clear()
        finally:
            self._flushing = None

    async def flush(self) -> None:
        """Waits until the acks already queued are written (or dropped with the socket)."""
        while self._flushing is not None:
            await asyncio.shield(self._flushing)
