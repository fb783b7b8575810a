"""Pure translation of incoming wire frames into QueueService requests.

Every typed field a frame carries (details, reply context, message context, group) is
sanitized here with services.common.typed_fields before it is rendered or passed on, so
the text the bot reads and the typed fields it receives follow the same rules.
"""

from __future__ import annotations

import hashlib
import uuid

from chatbot.common.v1 import context_pb2 as c
from chatbot.common.v1 import details_pb2 as d
from chatbot.common.v1 import message_pb2
from chatbot.queue.v1 import queue_service_pb2 as q
from chatbot.wire.v1 import frames_pb2 as w

from services.common.render import render
from services.common.typed_fields import (
    sanitize_context,
    sanitize_details,
    sanitize_group,
    sanitize_reply,
)


def derived_media_id(bot_id: str, provider_message_id: str) -> str:
    """A UUID4-shaped job key for media that Node could not stage.

    Derived, not random, so a resent corrupt or over-quota frame maps to the same job
    and is answered as a duplicate instead of creating a second one.
    """
    digest = hashlib.sha256(f"{bot_id}\0{provider_message_id}".encode()).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4))


def _context(header: w.IncomingHeader) -> c.MessageContext | None:
    return sanitize_context(header.context) if header.HasField("context") else None


def _reply(reply_to: d.ReplyContext, present: bool) -> d.ReplyContext | None:
    return sanitize_reply(reply_to) if present else None


def _new_message(
    header: w.IncomingHeader,
    content: str,
    reply_to: d.ReplyContext | None = None,
    context: c.MessageContext | None = None,
) -> q.NewMessage:
    message = q.NewMessage()
    _fill_message(message, header, content, reply_to, context)
    return message


def _fill_message(
    message: q.NewMessage,
    header: w.IncomingHeader,
    content: str,
    reply_to: d.ReplyContext | None,
    context: c.MessageContext | None,
) -> None:
    """Sets a request's (empty) message in place: a NewMessage passed to the request's
    constructor is copied, once per text frame."""
    message.content = content
    message.sender = header.sender
    message.source = message_pb2.MESSAGE_SOURCE_USER
    message.provider_message_id = header.provider_message_id
    message.originating_time.CopyFrom(header.originating_time)
    if header.HasField("group"):
        message.group.CopyFrom(sanitize_group(header.group))
    if reply_to is not None:
        message.reply_to.CopyFrom(reply_to)
    if context is not None:
        message.context.CopyFrom(context)


def identities_request(frame: w.IdentityMappings) -> q.LearnIdentitiesRequest:
    """LID <-> phone pairs Node learned outside any message, for the bot's shard."""
    return q.LearnIdentitiesRequest(
        bot_id=frame.bot_id,
        pairs=[q.IdentityPair(lid=m.lid, phone_jid=m.phone_jid) for m in frame.mappings],
    )


def text_request(frame: w.TextMessage) -> q.AddMessageRequest:
    reply_to = _reply(frame.reply_to, frame.HasField("reply_to"))
    context = _context(frame.header)
    content = render(frame.message, reply_to=reply_to, context=context)
    header = frame.header
    request = q.AddMessageRequest(bot_id=header.bot_id, correspondent_id=header.correspondent_id)
    _fill_message(request.message, header, content, reply_to, context)
    return request


def structured_request(frame: w.StructuredMessage) -> q.AddMessageRequest:
    """A location, contact, poll … travels exactly like text (dedup, acks, Subscribe),
    with its text rendered here and its structured values kept as typed fields."""
    header = frame.header
    reply_to = _reply(frame.reply_to, frame.HasField("reply_to"))
    context = _context(header)
    details = sanitize_details(frame.details, reply_to, context)
    content = render("", details, reply_to, context, header.sender)
    request = q.AddMessageRequest(bot_id=header.bot_id, correspondent_id=header.correspondent_id)
    _fill_message(request.message, header, content, reply_to, context)
    request.message.details.CopyFrom(details)
    return request


def media_request(frame: w.MediaMessage) -> q.InjectPlaceholderRequest:
    request = q.InjectPlaceholderRequest(
        bot_id=frame.header.bot_id,
        correspondent_id=frame.header.correspondent_id,
        message=_new_message(
            frame.header,
            frame.message,
            _reply(frame.reply_to, frame.HasField("reply_to")),
            _context(frame.header),
        ),
        media_processing_id=frame.media_processing_id,
        mime_type=frame.mime_type,
        media_kind=frame.media_kind,
        file_size=frame.file_size,
        condition=q.MEDIA_CONDITION_STAGED,
    )
    if frame.HasField("original_filename"):
        request.original_filename = frame.original_filename
    # reply_to and context are kept with the placeholder and its job; queue_svc puts
    # their lines before the media's text when it resolves (render.reply_prefix).
    return request


def unstaged_request(
    frame: w.CorruptMediaMessage | w.QuotaExceededMediaMessage,
) -> q.InjectPlaceholderRequest:
    """Corrupt and over-quota media still get a placeholder and a job (routed to the
    Corrupt / Unsupported pools) so every media message reaches the bot the same way."""
    header = frame.header
    if isinstance(frame, w.CorruptMediaMessage):
        condition, detail = q.MEDIA_CONDITION_CORRUPT, frame.reason
    else:
        condition = q.MEDIA_CONDITION_OVER_QUOTA
        detail = f"staging quota exceeded: {frame.used_bytes} of {frame.quota_bytes} bytes used"
    request = q.InjectPlaceholderRequest(
        bot_id=header.bot_id,
        correspondent_id=header.correspondent_id,
        message=_new_message(
            header,
            frame.message,
            _reply(frame.reply_to, frame.HasField("reply_to")),
            _context(header),
        ),
        media_processing_id=derived_media_id(header.bot_id, header.provider_message_id),
        # An empty type still routes (to the fallback pool) and reads clearly in markers.
        mime_type=frame.mime_type or "application/octet-stream",
        media_kind=frame.media_kind,
        condition=condition,
        condition_detail=detail,
    )
    if frame.HasField("original_filename"):
        request.original_filename = frame.original_filename
    # reply_to and context are kept with the placeholder and its job; queue_svc puts
    # their lines before the media's text when it resolves (render.reply_prefix).
    return request
