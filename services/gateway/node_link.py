"""The open WebSocket connections from Node servers, which of them serves which bot, and
outgoing messages sent through them (the outbox delivery, outbox_delivery.py, decides
what to send)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from chatbot.wire.v1 import frames_pb2 as w

from services.common.errors import PreconditionError, UnavailableError
from services.common.wire import encode_frame


class FrameSocket(Protocol):
    async def send_str(self, data: str) -> None: ...


@dataclass
class BotSession:
    """What the gateway last heard about one bot's WhatsApp session."""

    state: str = "SESSION_STATE_UNSPECIFIED"
    detail: str | None = None
    updated_at: str | None = None


@dataclass
class NodeLink:
    """Routes outgoing replies to the Node connection that serves the bot."""

    ack_timeout_seconds: float
    _sockets: list[FrameSocket] = field(default_factory=list)
    _bot_socket: dict[str, FrameSocket] = field(default_factory=dict)
    # frame id → (the socket it went out on, the future its ack resolves)
    _waiting: dict[str, tuple[FrameSocket, asyncio.Future[w.Ack]]] = field(default_factory=dict)
    sessions: dict[str, BotSession] = field(default_factory=dict)
    #: Called when a connection opens or reports a bot: pending messages may now have a
    #: way to Node (the outbox delivery wakes up).
    on_change: Callable[[], None] = field(default=lambda: None)
    #: Called when a connection closes: results awaited through it may never come.
    on_disconnect: Callable[[], None] = field(default=lambda: None)

    def connected(self, socket: FrameSocket) -> None:
        self._sockets.append(socket)
        self.on_change()

    def disconnected(self, socket: FrameSocket) -> None:
        if socket in self._sockets:
            self._sockets.remove(socket)
        for bot_id in [b for b, s in self._bot_socket.items() if s is socket]:
            del self._bot_socket[bot_id]
        # No ack can come on a closed socket: the sender learns now, not at its timeout.
        for frame_id, (sent_on, waiter) in list(self._waiting.items()):
            if sent_on is socket and not waiter.done():
                waiter.set_exception(UnavailableError("the Node connection closed"))
                del self._waiting[frame_id]
        self.on_disconnect()

    @property
    def connection_count(self) -> int:
        return len(self._sockets)

    def saw_bot(self, bot_id: str, socket: FrameSocket) -> None:
        if self._bot_socket.get(bot_id) is not socket:
            self._bot_socket[bot_id] = socket
            self.on_change()

    def serves(self, bot_id: str) -> bool:
        """Whether a connection of this gateway can take the bot's outgoing messages: the
        one that reported the bot, or the only one there is."""
        return bot_id in self._bot_socket or len(self._sockets) == 1

    def session_event(self, event: w.SessionEvent, socket: FrameSocket) -> None:
        self.saw_bot(event.bot_id, socket)
        self.sessions[event.bot_id] = BotSession(
            state=w.SessionState.Name(event.state),
            detail=event.detail if event.HasField("detail") else None,
            updated_at=event.time.ToJsonString(),
        )

    def acknowledged(self, ack: w.Ack) -> bool:
        """Resolves the reply waiting for this ack; False when none is waiting."""
        waiting = self._waiting.pop(ack.frame_id, None)
        if waiting is None:
            return False
        with contextlib.suppress(asyncio.InvalidStateError):
            waiting[1].set_result(ack)
        return True

    def _socket_for(self, bot_id: str) -> FrameSocket:
        socket = self._bot_socket.get(bot_id)
        if socket is not None:
            return socket
        if len(self._sockets) == 1:
            return self._sockets[0]
        if not self._sockets:
            raise UnavailableError("no Node server is connected to the gateway; start it")
        raise PreconditionError(
            f"no Node connection has reported bot {bot_id!r} yet; initialise the bot first"
        )

    async def send_outgoing(self, reply: w.OutgoingMessage) -> w.Ack:
        """Sends one outgoing message and waits for Node's acknowledgement (that it took
        the message; the outcome follows as an OutgoingResult frame)."""
        socket = self._socket_for(reply.bot_id)
        frame = w.GatewayFrame(frame_id=f"g-{uuid.uuid4()}", outgoing_message=reply)
        waiter: asyncio.Future[w.Ack] = asyncio.get_running_loop().create_future()
        self._waiting[frame.frame_id] = (socket, waiter)
        try:
            await socket.send_str(encode_frame(frame))
            return await asyncio.wait_for(waiter, self.ack_timeout_seconds)
        except (ConnectionError, RuntimeError) as error:
            # aiohttp refuses to write to a closing socket with one of these.
            raise UnavailableError(f"the Node connection closed: {error}") from None
        except TimeoutError:
            raise UnavailableError(
                f"Node did not acknowledge the reply within {self.ack_timeout_seconds:g} s"
            ) from None
        finally:
            self._waiting.pop(frame.frame_id, None)
