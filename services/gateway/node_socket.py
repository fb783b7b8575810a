"""The WebSocket Node connects to: frames in (handled concurrently, acknowledged in
any order), replies and acknowledgements out through the same socket. A Node that offers
frame batches (services/common/wire_batch.py) may send several frames per
message and gets the acks of one event-loop turn as one message."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from aiohttp import WSMsgType, web
from chatbot.wire.v1 import frames_pb2 as w

from services.common.wire_batch import BATCH_HEADER, BATCH_VERSION, split_frames
from services.gateway.ack_writer import AckWriter
from services.gateway.frame_handler import FrameHandler
from services.gateway.metrics import GatewayMetrics
from services.gateway.node_link import NodeLink

log = logging.getLogger(__name__)

#: Frames handled concurrently per connection (they batch together); more wait.
MAX_IN_FLIGHT_FRAMES = 1024
#: Once the limit was reached, reading resumes when this many are still in flight.
RESUME_IN_FLIGHT_FRAMES = MAX_IN_FLIGHT_FRAMES // 2


class NodeSocket:
    def __init__(
        self,
        *,
        handler: FrameHandler,
        link: NodeLink,
        metrics: GatewayMetrics,
        max_message_bytes: int,
    ) -> None:
        self._handler = handler
        self._link = link
        self._metrics = metrics
        self._max_message_bytes = max_message_bytes
        self._sockets: set[web.WebSocketResponse] = set()

    async def websocket(self, request: web.Request) -> web.StreamResponse:
        # Read frames well beyond the wire limit so that an oversized one is answered
        # REJECTED by the parser instead of closing the connection.
        ws = web.WebSocketResponse(heartbeat=20, max_msg_size=self._max_message_bytes)
        batched = request.headers.get(BATCH_HEADER) == BATCH_VERSION
        if batched:
            ws.headers[BATCH_HEADER] = BATCH_VERSION
        await ws.prepare(request)
        self._sockets.add(ws)
        self._link.connected(ws)
        self._metrics.node_connections.set(self._link.connection_count)
        acks = AckWriter(ws, batched=batched, on_sent=self._metrics.frame_acked)
        frames = _InFlight(self._handler, ws, acks)
        log.info("Node connected from %s%s", request.remote, " (frame batches)" if batched else "")
        try:
            async for message in ws:
                if message.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    for data in split_frames(message.data) if batched else (message.data,):
                        await frames.room()
                        frames.take(data)
                elif message.type == WSMsgType.ERROR:
                    log.warning("Node WebSocket error: %r", ws.exception())
        finally:
            await frames.drain()
            await acks.flush()
            self._link.disconnected(ws)
            self._sockets.discard(ws)
            self._metrics.node_connections.set(self._link.connection_count)
            log.info("Node disconnected from %s", request.remote)
        return ws

    async def close_all(self, app: web.Application) -> None:
        """on_shutdown: tells every Node connection the gateway is going away."""
        for ws in list(self._sockets):
            await ws.close(code=1001, message=b"gateway shutting down")


class _InFlight:
    """The frames of one connection being handled; reading waits while there are too
    many.

    On a batching connection a text frame is handled without a task of its own (its ack
    is queued from the writer's callback), which halves the gateway's work per frame at
    saturation; every other frame, and every frame of a connection without batches, gets
    a task. Tasks start in arrival order, and a frame is handled inline only while no
    task is waiting to start, so frames reach the writer in arrival order either way
    (which keeps text order per chat).
    """

    def __init__(self, handler: FrameHandler, ws: web.WebSocketResponse, acks: AckWriter) -> None:
        self._handler = handler
        self._ws = ws
        self._acks = acks
        self._count = 0
        self._unstarted = 0
        self._tasks: set[asyncio.Task[None]] = set()
        # Set whenever reading may go on; a semaphore woke the reader once per finished
        # frame at saturation, which cost more than the frame's own bookkeeping: this
        # wakes it once half the room is free.
        self._room = asyncio.Event()
        self._room.set()
        self._idle = asyncio.Event()
        self._idle.set()

    async def room(self) -> None:
        if self._count >= MAX_IN_FLIGHT_FRAMES:
            self._room.clear()
            await self._room.wait()

    def take(self, data: str | bytes) -> None:
        self._started()
        if self._acks.batched and self._unstarted == 0:
            parsed = self._handler.handle_now(data, self._ws, self._reply)
            if parsed is None:
                return
            self._spawn(self._answer_parsed(*parsed))
        else:
            self._spawn(self._answer(data))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        self._unstarted += 1
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _reply(self, text: str, status: w.AckStatus.ValueType) -> None:
        try:
            if not self._ws.closed:
                self._acks.queue(text, status)
        finally:
            self._finished()

    async def _answer(self, data: str | bytes) -> None:
        # Nothing awaits between here and the frame reaching the writer.
        self._unstarted -= 1
        try:
            await self._send(await self._handler.handle(data, self._ws))
        except (ConnectionError, RuntimeError) as error:
            # Node resends every unacknowledged frame after reconnecting.
            log.info("could not acknowledge a frame, connection gone: %r", error)
        finally:
            self._finished()

    async def _answer_parsed(self, frame: w.NodeFrame, started: float) -> None:
        self._unstarted -= 1
        try:
            await self._send(await self._handler.handle_parsed(frame, self._ws, started))
        except (ConnectionError, RuntimeError) as error:
            log.info("could not acknowledge a frame, connection gone: %r", error)
        finally:
            self._finished()

    async def _send(self, reply: w.GatewayFrame | None) -> None:
        if reply is not None and not self._ws.closed:
            await self._acks.send(reply)

    def _started(self) -> None:
        self._count += 1
        self._idle.clear()

    def _finished(self) -> None:
        self._count -= 1
        if self._count <= RESUME_IN_FLIGHT_FRAMES:
            self._room.set()
        if self._count == 0:
            self._idle.set()

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)

    async def drain(self) -> None:
        """Waits until every frame taken is decided (its ack sent or dropped)."""
        await self._idle.wait()
