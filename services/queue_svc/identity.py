"""One person, one correspondent: the pairs a message reveals, the message re-addressed
to the person's LID with the phone numbers filled in, and the identity event.

Pure functions over the queue's values; the learning itself (store, merge, event) is
identities.py. The message context lives inside the details JSON (convert.py), so
re-addressing a message rewrites the context there and in `NewMessage.identity` alike.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime
from typing import Any

from chatbot.common.v1 import details_pb2 as d
from google.protobuf import json_format

from services.common.errors import InvalidInputError
from services.common.render import render_details
from services.common.store import LID_SUFFIX, PHONE_SUFFIX, IdentityPair
from services.queue_svc.identity_map import IdentityMap
from services.queue_svc.messages import CONTEXT_KEY, Identity, NewMessage, QueuedMessage

LID_KIND = "ID_KIND_LID"
# Identity events are deduplicated by this provider id like any message, so the same
# pair learned again (another replica, a restart, a resent frame) never emits twice.
EVENT_ID_PREFIX = "identity-change:"


def phone_jid(digits: str) -> str:
    return digits + PHONE_SUFFIX


def digits_of(jid: str) -> str:
    return jid.removesuffix(PHONE_SUFFIX)


def _pair(lid: str, digits: str) -> IdentityPair | None:
    try:
        return IdentityPair(lid, phone_jid(digits))
    except InvalidInputError:
        return None  # not a LID, or a phone that is not digits: nothing to learn


def pairs_in(correspondent_id: str, message: NewMessage) -> list[IdentityPair]:
    """LID + phone pairs the message's context gives: the chat's (a direct chat by LID
    with its phone number) and the sender's (a group participant by LID with theirs)."""
    identity = message.identity
    if identity is None:
        return []
    found = []
    if identity.correspondent_phone and correspondent_id.endswith(LID_SUFFIX):
        found.append(_pair(correspondent_id, identity.correspondent_phone))
    if identity.sender_phone and message.sender.endswith(LID_SUFFIX):
        found.append(_pair(message.sender, identity.sender_phone))
    return [p for p in found if p is not None]


def _context_updates(
    identities: IdentityMap, correspondent_id: str, sender: str
) -> tuple[str, str, dict[str, str]]:
    """(chat id, sender, context fields) with every known LID and phone number applied."""
    chat = identities.canonical(correspondent_id)
    who = identities.canonical(sender)
    fields: dict[str, str] = {}
    chat_phone = identities.phone_of(chat)
    if chat_phone is not None:
        fields["correspondentIdKind"] = LID_KIND
        fields["correspondentPhone"] = digits_of(chat_phone)
    sender_phone = identities.phone_of(who)
    if sender_phone is not None:
        fields["senderIdKind"] = LID_KIND
        fields["senderPhone"] = digits_of(sender_phone)
    return chat, who, fields


def _with_context(details: str | None, fields: dict[str, str]) -> str:
    parts: dict[str, Any] = json.loads(details) if details else {}
    context = parts.setdefault(CONTEXT_KEY, {})
    context.update(fields)
    return json.dumps(parts, sort_keys=True, ensure_ascii=False)


def _identity_after(identity: Identity | None, fields: dict[str, str]) -> Identity:
    identity = identity or Identity()
    return dataclasses.replace(
        identity,
        correspondent_kind=fields.get("correspondentIdKind", identity.correspondent_kind),
        correspondent_phone=fields.get("correspondentPhone", identity.correspondent_phone),
        sender_kind=fields.get("senderIdKind", identity.sender_kind),
        sender_phone=fields.get("senderPhone", identity.sender_phone),
    )


def readdress(
    identities: IdentityMap, correspondent_id: str, message: NewMessage
) -> tuple[str, NewMessage]:
    """The message as the person's: chat and sender by LID when known, their phone
    numbers in the context. Unchanged (the same object) when nothing is known, and for
    what the bot or the platform wrote (their messages carry no context)."""
    chat, sender, fields = _context_updates(identities, correspondent_id, message.sender)
    if message.source != "user":
        return chat, message
    if not fields and chat == correspondent_id and sender == message.sender:
        return chat, message
    identity = _identity_after(message.identity, fields)
    if identity == message.identity and sender == message.sender:
        return chat, message
    return chat, dataclasses.replace(
        message,
        sender=sender,
        details=_with_context(message.details, fields),
        identity=identity,
    )


def moved_entry(
    identities: IdentityMap, correspondent_id: str, entry: QueuedMessage, new_id: int
) -> QueuedMessage:
    """A copy of a queue entry taken into the person's LID queue under `new_id`, its
    sender and context re-addressed like a new message's."""
    if entry.source != "user":
        return dataclasses.replace(entry, id=new_id)
    _chat, sender, fields = _context_updates(identities, correspondent_id, entry.sender)
    return dataclasses.replace(
        entry, id=new_id, sender=sender, details=_with_context(entry.details, fields)
    )


def event_provider_id(pair: IdentityPair) -> str:
    return f"{EVENT_ID_PREFIX}{pair.phone_jid}>{pair.lid}"


def identity_event(pair: IdentityPair, now: datetime) -> NewMessage:
    """The one message that tells the bot the person it knew by phone JID is now the LID."""
    details = d.MessageDetails(
        identity_change=d.IdentityChange(
            previous_correspondent_id=pair.phone_jid,
            correspondent_id=pair.lid,
            phone=pair.phone,
        )
    )
    return NewMessage(
        content=render_details(details),
        sender=pair.lid,
        source="system",
        originating_time=now,
        provider_message_id=event_provider_id(pair),
        details=json.dumps(
            {"details": json_format.MessageToDict(details)}, sort_keys=True, ensure_ascii=False
        ),
    )


def identity_in(details: str | None) -> Identity | None:
    """The identity part of the context kept in a details JSON (a media job's), or None."""
    if not details:
        return None
    context = json.loads(details).get(CONTEXT_KEY)
    if not isinstance(context, dict):
        return None
    return Identity(
        correspondent_kind=str(context.get("correspondentIdKind", "ID_KIND_UNSPECIFIED")),
        correspondent_phone=context.get("correspondentPhone"),
        sender_kind=str(context.get("senderIdKind", "ID_KIND_UNSPECIFIED")),
        sender_phone=context.get("senderPhone"),
    )
