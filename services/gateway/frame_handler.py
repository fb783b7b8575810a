"""Handles one frame from Node: validate, forward, and decide its acknowledgement."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from chatbot.wire.v1 import frames_pb2 as w

from services.common.errors import UnavailableError, classify
from services.common.logs import LogSummary
from services.common.wire import FrameError, encode_ack, encode_frame, parse_node_frame
from services.gateway import translate
from services.gateway.metrics import GatewayMetrics
from services.gateway.node_link import FrameSocket, NodeLink
from services.gateway.queue_writer import ACCEPTED, AckOutcome, QueueWriter

log = logging.getLogger(__name__)


class FrameHandler:
    def __init__(
        self,
        writer: QueueWriter,
        link: NodeLink,
        metrics: GatewayMetrics,
        *,
        log_interval_seconds: float = 10.0,
        on_outgoing_result: Callable[[w.OutgoingResult], Awaitable[None]] | None = None,
    ) -> None:
        self._writer = writer
        self._on_outgoing_result = on_outgoing_result
        self._link = link
        self._metrics = metrics
        # During an outage every frame is answered RETRY, hundreds a second; a flood of
        # bad frames is no different. One summary line per interval says as much.
        self._rejected = LogSummary(
            log, "frames rejected", level=logging.WARNING, interval_seconds=log_interval_seconds
        )
        self._retried = LogSummary(
            log, "frames to resend", level=logging.WARNING, interval_seconds=log_interval_seconds
        )
        self._duplicates = LogSummary(
            log, "duplicate frames", level=logging.INFO, interval_seconds=log_interval_seconds
        )

    def flush_logs(self) -> None:
        for summary in (self._rejected, self._retried, self._duplicates):
            summary.flush()

    async def handle(self, text: str | bytes, socket: FrameSocket) -> w.GatewayFrame | None:
        """The acknowledgement to send back, or None for frames that get none (acks)."""
        started = time.perf_counter()
        frame = self._parse(text)
        if isinstance(frame, w.GatewayFrame):
            return frame
        return await self.handle_parsed(frame, socket, started)

    def handle_now(
        self,
        text: str | bytes,
        socket: FrameSocket,
        reply: Callable[[str, w.AckStatus.ValueType], None],
    ) -> tuple[w.NodeFrame, float] | None:
        """Handles a frame without a task of its own where it can (the hot path of a
        batching connection): a frame that does not parse is answered through `reply` at
        once, and a text or structured frame once its batch is decided. Any other frame
        comes back, parsed, with its start time, for `handle_parsed` in a task.

        Text frames reach the writer in the order of these calls, as they would from
        tasks started in arrival order."""
        started = time.perf_counter()
        frame = self._parse(text)
        if isinstance(frame, w.GatewayFrame):
            reply(encode_frame(frame), frame.ack.status)
            return None
        kind = frame.WhichOneof("payload")
        if kind not in ("text_message", "structured_message"):
            return frame, started
        self._metrics.frame_received(kind)
        frame_id = frame.frame_id

        def decided(outcome: AckOutcome) -> None:
            try:
                self._noted(frame_id, kind, outcome, started)
            except Exception:
                # Bookkeeping must not cost the frame its ack (nor the connection its
                # count of frames in flight).
                log.exception("noting the answer to frame %r failed", frame_id)
            reply(ack_text(frame_id, outcome), outcome.status)

        try:
            if kind == "text_message":
                message = frame.text_message
                self._link.saw_bot(message.header.bot_id, socket)
                request = translate.text_request(message)
            else:
                structured = frame.structured_message
                self._link.saw_bot(structured.header.bot_id, socket)
                request = translate.structured_request(structured)
        except Exception as error:
            decided(_unexpected(frame, error))
            return None
        self._writer.submit_text(request, decided)
        return None

    async def handle_parsed(
        self, frame: w.NodeFrame, socket: FrameSocket, started: float
    ) -> w.GatewayFrame | None:
        kind = frame.WhichOneof("payload") or "none"
        self._metrics.frame_received(kind)
        try:
            outcome = await self._dispatch(frame, socket)
        except Exception as error:
            outcome = _unexpected(frame, error)
        if outcome is None:
            return None
        self._noted(frame.frame_id, kind, outcome, started)
        return _ack(frame.frame_id, outcome)

    def _parse(self, text: str | bytes) -> w.NodeFrame | w.GatewayFrame:
        """The frame, or the REJECTED ack of one that does not parse."""
        try:
            return parse_node_frame(text)
        except FrameError as error:
            kind = "malformed" if error.reason.startswith("malformed") else "invalid"
            self._metrics.frames_rejected.labels(kind).inc()
            self._rejected.note(kind, f"frame {error.frame_id!r}: {error.reason[:300]}")
            return _ack(error.frame_id, AckOutcome(w.ACK_STATUS_REJECTED, error.reason))

    def _noted(self, frame_id: str, kind: str, outcome: AckOutcome, started: float) -> None:
        """The metrics and log summaries of a frame's answer."""
        self._metrics.frame_answered(kind, time.perf_counter() - started)
        if outcome.status == w.ACK_STATUS_DUPLICATE:
            self._duplicates.note(kind, f"frame {frame_id!r}")
        elif outcome.status != w.ACK_STATUS_ACCEPTED:
            summary = self._rejected if outcome.status == w.ACK_STATUS_REJECTED else self._retried
            reason = outcome.reason or ""
            summary.note(reason[:120], f"frame {frame_id!r} ({kind})")

    async def _dispatch(self, frame: w.NodeFrame, socket: FrameSocket) -> AckOutcome | None:
        payload = frame.WhichOneof("payload")
        if payload == "text_message":
            self._link.saw_bot(frame.text_message.header.bot_id, socket)
            return await self._writer.add_text(translate.text_request(frame.text_message))
        if payload == "structured_message":
            self._link.saw_bot(frame.structured_message.header.bot_id, socket)
            return await self._writer.add_text(
                translate.structured_request(frame.structured_message)
            )
        if payload == "media_message":
            self._link.saw_bot(frame.media_message.header.bot_id, socket)
            return await self._writer.inject_placeholder(
                translate.media_request(frame.media_message)
            )
        if payload == "corrupt_media_message":
            self._link.saw_bot(frame.corrupt_media_message.header.bot_id, socket)
            return await self._writer.inject_placeholder(
                translate.unstaged_request(frame.corrupt_media_message)
            )
        if payload == "quota_exceeded_media_message":
            self._link.saw_bot(frame.quota_exceeded_media_message.header.bot_id, socket)
            return await self._writer.inject_placeholder(
                translate.unstaged_request(frame.quota_exceeded_media_message)
            )
        if payload == "identity_mappings":
            self._link.saw_bot(frame.identity_mappings.bot_id, socket)
            return await self._writer.learn_identities(
                translate.identities_request(frame.identity_mappings)
            )
        if payload == "session_event":
            self._link.session_event(frame.session_event, socket)
            log.info(
                "bot %s session %s",
                frame.session_event.bot_id,
                w.SessionState.Name(frame.session_event.state),
            )
            return ACCEPTED
        if payload == "outgoing_result":
            if self._on_outgoing_result is None:
                return AckOutcome(w.ACK_STATUS_REJECTED, "this gateway has no outbox")
            self._link.saw_bot(frame.outgoing_result.bot_id, socket)
            # Acknowledged only once recorded: Node resends the result until then.
            await self._on_outgoing_result(frame.outgoing_result)
            return ACCEPTED
        if payload == "ack":
            if not self._link.acknowledged(frame.ack):
                log.warning("ack for unknown or expired reply frame %r", frame.ack.frame_id)
            return None
        raise AssertionError(f"validated frame without a known payload: {payload}")


def _unexpected(frame: w.NodeFrame, error: Exception) -> AckOutcome:
    """An answer even when handling a valid frame fails in a way nobody planned for.

    A failure that is not a dependency's is most likely caused by the frame itself;
    answering RETRY would make Node resend it forever and hold its chat behind it.
    """
    meaning = classify(error)
    if isinstance(meaning, UnavailableError):
        return AckOutcome(w.ACK_STATUS_RETRY, str(meaning))
    if meaning is None:
        log.error("frame %r could not be handled", frame.frame_id, exc_info=error)
    return AckOutcome(
        w.ACK_STATUS_REJECTED, f"gateway could not handle the frame: {meaning or repr(error)}"
    )


def _printable(text: str) -> str:
    # Reasons quote the input, which may hold lone surrogates (escaped in the JSON); a
    # protobuf string refuses them, and a failed ack would be no ack at all.
    if text.isascii():
        return text  # no surrogate in it: the common case, once per frame
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def ack_text(frame_id: str, outcome: AckOutcome) -> str:
    """The encoded frame `_ack` builds, without building it (once per text frame)."""
    reason = None if outcome.reason is None else _printable(outcome.reason[:2000])
    return encode_ack(_printable(frame_id), outcome.status, reason)


def _ack(frame_id: str, outcome: AckOutcome) -> w.GatewayFrame:
    # Filled in place: w.GatewayFrame(ack=w.Ack(...)) builds the ack twice (a copy).
    frame = w.GatewayFrame()
    ack = frame.ack
    ack.frame_id = _printable(frame_id)
    ack.status = outcome.status
    if outcome.reason is not None:
        ack.reason = _printable(outcome.reason[:2000])
    return frame
