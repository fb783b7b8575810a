"""The WebSocket Node connects to: frames in (handled concurrently, acknowledged in
any order), replies and acknowledgements out through the same socket. A Node that offers
frame batches (services/common/wire_batch.py) may send several frames per
message and gets the acks of one event-loop turn as one message."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import WSMsgType, web

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
        # The frames being handled; reading waits while there are too many. A semaphore
        # woke the reader once per finished frame at saturation, which cost more than
        # the frame's own bookkeeping: this wakes it once half the room is free.
        tasks: set[asyncio.Task[None]] = set()
        room = asyncio.Event()
        room.set()

        def finished(task: asyncio.Task[None]) -> None:
            tasks.discard(task)
            if len(tasks) <= RESUME_IN_FLIGHT_FRAMES:
                room.set()

        async def answer(data: str | bytes) -> None:
            try:
                reply = await self._handler.handle(data, ws)
                if reply is not None and not ws.closed:
                    await acks.send(reply)
            except (ConnectionError, RuntimeError) as error:
                # Node resends every unacknowledged frame after reconnecting.
                log.info("could not acknowledge a frame, connection gone: %r", error)

        log.info("Node connected from %s%s", request.remote, " (frame batches)" if batched else "")
        try:
            async for message in ws:
                if message.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    for data in split_frames(message.data) if batched else (message.data,):
                        if len(tasks) >= MAX_IN_FLIGHT_FRAMES:
                            room.clear()
                            await room.wait()
                        # One task per frame lets concurrent text frames share a batch;
                        # tasks start in arrival order, which keeps text order per chat.
                        task = asyncio.create_task(answer(data))
                        tasks.add(task)
                        task.add_done_callback(finished)
                elif message.type == WSMsgType.ERROR:
                    log.warning("Node WebSocket error: %r", ws.exception())
        finally:
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
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
