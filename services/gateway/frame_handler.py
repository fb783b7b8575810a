"""Handles one frame from Node: validate, forward, and decide its acknowledgement."""

from __future__ import annotations

import logging
import time

from chatbot.wire.v1 import frames_pb2 as w

from services.common.wire import FrameError, parse_node_frame
from services.gateway import translate
from services.gateway.metrics import GatewayMetrics
from services.gateway.node_link import FrameSocket, NodeLink
from services.gateway.queue_writer import ACCEPTED, AckOutcome, QueueWriter

log = logging.getLogger(__name__)


class FrameHandler:
    def __init__(self, writer: QueueWriter, link: NodeLink, metrics: GatewayMetrics) -> None:
        self._writer = writer
        self._link = link
        self._metrics = metrics

    async def handle(self, text: str | bytes, socket: FrameSocket) -> w.GatewayFrame | None:
        """The acknowledgement to send back, or None for frames that get none (acks)."""
        started = time.perf_counter()
        try:
            frame = parse_node_frame(text)
        except FrameError as error:
            kind = "malformed" if error.reason.startswith("malformed") else "invalid"
            self._metrics.frames_rejected.labels(kind).inc()
            log.warning(
                "rejected frame", extra={"frame_id": error.frame_id, "reason": error.reason}
            )
            return _ack(error.frame_id, AckOutcome(w.ACK_STATUS_REJECTED, error.reason))
        kind = frame.WhichOneof("payload") or "none"
        self._metrics.frames_received.labels(kind).inc()
        outcome = await self._dispatch(frame, socket)
        if outcome is None:
            return None
        self._metrics.frame_latency.labels(kind).observe(time.perf_counter() - started)
        if outcome.status != w.ACK_STATUS_ACCEPTED:
            log.info(
                "frame %s (%s): %s %s",
                frame.frame_id,
                kind,
                w.AckStatus.Name(outcome.status),
                outcome.reason or "",
            )
        return _ack(frame.frame_id, outcome)

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
        if payload == "session_event":
            self._link.session_event(frame.session_event, socket)
            log.info(
                "bot %s session %s",
                frame.session_event.bot_id,
                w.SessionState.Name(frame.session_event.state),
            )
            return ACCEPTED
        if payload == "ack":
            if not self._link.acknowledged(frame.ack):
                log.warning("ack for unknown or expired reply frame %r", frame.ack.frame_id)
            return None
        raise AssertionError(f"validated frame without a known payload: {payload}")


def _log_fields(frame: w.NodeFrame) -> dict[str, str]:
    """bot_id / correspondent_id / provider_message_id of a message frame, for the logs."""
    payload = frame.WhichOneof("payload")
    header = getattr(getattr(frame, payload or ""), "header", None) if payload else None
    if not isinstance(header, w.IncomingHeader):
        return {}
    fields = {
        "bot_id": header.bot_id,
        "correspondent_id": header.correspondent_id,
        "provider_message_id": header.provider_message_id,
    }
    if payload == "media_message":
        fields["media_processing_id"] = frame.media_message.media_processing_id
    return fields


def _ack(frame_id: str, outcome: AckOutcome) -> w.GatewayFrame:
    ack = w.Ack(frame_id=frame_id, status=outcome.status)
    if outcome.reason is not None:
        ack.reason = outcome.reason[:2000]
    return w.GatewayFrame(ack=ack)
