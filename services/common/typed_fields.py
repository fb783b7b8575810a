"""The typed fields a bot receives, held to the same rules as the text it reads.

Node fills `details`, `reply_to`, the header's `context` and `group` from what the sender
wrote; the wire checks bounds but not content. Before the gateway renders the text and
passes the typed fields on, `sanitize_details`, `sanitize_reply`, `sanitize_context` and
`sanitize_group` apply
the rules `services.common.render` applies to the text, in this one place, so a bot
that reads the typed fields never sees what the text withheld:

- every string loses control, format and surrogate characters (`render.clean`) and is
  cut to its field's `max_length` from the proto; only an edit's new text keeps its
  line breaks and tabs, like the text message it replaces;
- names WhatsApp gives (message types, stub types, statuses, currency, ad source and
  media types) keep letters, digits and underscores only; phone numbers keep digits;
- lists are cut to their `max_items`, the cut counted in the matching `omitted_*`
  field; a list element whose required value is empty after cleaning is dropped;
  a required value that cleaning emptied elsewhere becomes "unknown";
- a location's `coordinates_valid` is recomputed (the sender's claim and the range
  check), and a coordinate that is not a finite number becomes 0;
- an edit's new text is cut exactly as queue_svc cuts the message (`truncate_marked`),
  so that the rendered edit fits `max_text_characters` and ends with the same text as
  `Edit.text`.

Walking the descriptors (not a list of fields) means a string field added to these
protos later is cleaned and bounded without a change here.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from chatbot.common.v1 import context_pb2 as c
from chatbot.common.v1 import details_pb2 as d
from chatbot.common.v1 import message_pb2 as m
from chatbot.options.v1 import field_options_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from services.common.render import clean, clean_text, coordinates_valid, name_characters, render
from services.common.store import DEFAULT_MAX_MESSAGE_CHARACTERS
from services.common.truncation import truncate_marked

#: A string field without a `max_length` in the proto is still bounded.
DEFAULT_MAX_LENGTH = 1024
#: What a required value that cleaning left empty becomes.
UNKNOWN = "unknown"
_UINT32_MAX = 2**32 - 1

_NOT_DIGITS = re.compile(r"[^0-9]")


def _digits(value: str, limit: int) -> str:
    return _NOT_DIGITS.sub("", value)[:limit]


def _text(value: str, limit: int) -> str:
    return clean_text(value)[:limit]


# Fields whose value is not free text, by full field name.
_STRING_RULES: dict[str, Callable[[str, int], str]] = {
    "chatbot.common.v1.Unsupported.message_type": name_characters,
    "chatbot.common.v1.GroupEvent.stub_type": name_characters,
    "chatbot.common.v1.Commerce.status": name_characters,
    "chatbot.common.v1.Commerce.currency": name_characters,
    "chatbot.common.v1.AdReply.source_type": name_characters,
    "chatbot.common.v1.AdReply.media_type": name_characters,
    "chatbot.common.v1.MessageContext.correspondent_phone": _digits,
    "chatbot.common.v1.MessageContext.sender_phone": _digits,
    "chatbot.common.v1.Mention.phone": _digits,
    "chatbot.common.v1.IdentityChange.phone": _digits,
    "chatbot.common.v1.Edit.text": _text,
}

# A bounded list and the field that counts what the bound left out.
_OMITTED_COUNTS = {
    "chatbot.common.v1.Contacts.contacts": "omitted_contact_count",
    "chatbot.common.v1.Contact.phone_numbers": "omitted_phone_count",
    "chatbot.common.v1.Poll.options": "omitted_option_count",
    "chatbot.common.v1.BusinessMessage.choices": "omitted_choice_count",
    "chatbot.common.v1.GroupEvent.participants": "omitted_participant_count",
    "chatbot.common.v1.MessageContext.mentions": "omitted_mention_count",
}


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    kind: int  # _STRING, _MESSAGE, _MESSAGES or _OTHER
    rule: Callable[[str, int], str]
    max_length: int
    max_items: int
    required: bool
    has_presence: bool
    omitted_count: str | None


_STRING, _MESSAGE, _MESSAGES, _OTHER = range(4)


def _constraints(field: FieldDescriptor) -> field_options_pb2.FieldConstraints:
    options = field.GetOptions()
    if options.HasExtension(field_options_pb2.field):
        return options.Extensions[field_options_pb2.field]
    return field_options_pb2.FieldConstraints()


_EDIT_TEXT_LIMIT = _constraints(d.Edit.DESCRIPTOR.fields_by_name["text"]).max_length
_SNIPPET_LIMIT = _constraints(d.ReplyContext.DESCRIPTOR.fields_by_name["snippet"]).max_length


@functools.cache
def _plan(descriptor: Descriptor) -> tuple[_Field, ...]:
    """What to clean in a message type, read from its descriptor once per process."""
    plan = []
    for field in cast("list[FieldDescriptor]", list(descriptor.fields)):
        rules = _constraints(field)
        is_message = field.type == FieldDescriptor.TYPE_MESSAGE
        if field.is_repeated:
            kind = _MESSAGES if is_message else _OTHER
        elif is_message:
            kind = _MESSAGE
        else:
            kind = _STRING if field.type == FieldDescriptor.TYPE_STRING else _OTHER
        plan.append(
            _Field(
                name=field.name,
                kind=kind,
                rule=_STRING_RULES.get(field.full_name, clean),
                max_length=rules.max_length or DEFAULT_MAX_LENGTH,
                max_items=rules.max_items,
                required=rules.required,
                has_presence=field.has_presence,
                omitted_count=_OMITTED_COUNTS.get(field.full_name),
            )
        )
    return tuple(plan)


@functools.cache
def _required_strings(descriptor: Descriptor) -> tuple[str, ...]:
    return tuple(f.name for f in _plan(descriptor) if f.kind == _STRING and f.required)


def _required_empty(message: Message) -> bool:
    """True when a required string of `message` is empty (the element is dropped)."""
    return not all(getattr(message, name) for name in _required_strings(message.DESCRIPTOR))


def _sanitize(message: Message, in_list: bool = False) -> None:
    for f in _plan(message.DESCRIPTOR):
        if f.kind == _STRING:
            value = getattr(message, f.name)
            if not value and not (f.required and not in_list):
                if f.has_presence and message.HasField(f.name):
                    message.ClearField(f.name)  # present but empty says nothing
                continue
            cleaned = f.rule(value, f.max_length)
            if cleaned:
                if cleaned != value:
                    setattr(message, f.name, cleaned)
            elif f.required and not in_list:
                setattr(message, f.name, UNKNOWN)
            elif f.has_presence:
                message.ClearField(f.name)
            else:
                setattr(message, f.name, "")
        elif f.kind == _MESSAGE:
            if message.HasField(f.name):
                _sanitize(getattr(message, f.name))
        elif f.kind == _MESSAGES:
            _bound_list(message, f)
    if isinstance(message, d.Location):
        _location(message)


def _bound_list(message: Message, f: _Field) -> None:
    items = getattr(message, f.name)
    kept: list[Message] = []
    dropped = 0
    for item in items:
        if f.max_items and len(kept) == f.max_items:
            dropped += 1
            continue
        copy = type(item)()
        copy.CopyFrom(item)
        _sanitize(copy, in_list=True)
        if _required_empty(copy):
            dropped += 1
        else:
            kept.append(copy)
    del items[:]
    items.extend(kept)
    if f.omitted_count is not None:
        total = getattr(message, f.omitted_count) + dropped
        setattr(message, f.omitted_count, min(total, _UINT32_MAX))


def _location(location: d.Location) -> None:
    lat, lon = location.latitude, location.longitude
    location.coordinates_valid = location.coordinates_valid and coordinates_valid(lat, lon)
    # NaN and infinities are no position at all, and NaN != NaN would break every
    # comparison of the stored message with the delivered one.
    if not math.isfinite(lat):
        location.latitude = 0.0
    if not math.isfinite(lon):
        location.longitude = 0.0


def sanitize_reply(reply_to: d.ReplyContext) -> d.ReplyContext:
    """A cleaned copy of a reply context (the snippet is marked when cleaning cut it)."""
    result = d.ReplyContext()
    result.CopyFrom(reply_to)
    cut = len(clean(reply_to.snippet, len(reply_to.snippet) + 1)) > _SNIPPET_LIMIT
    _sanitize(result)
    result.snippet_truncated = result.snippet_truncated or cut
    return result


def sanitize_group(group: m.GroupInfo) -> m.GroupInfo:
    """A cleaned copy of a group's id and subject (the subject is the group admin's text)."""
    result = m.GroupInfo()
    result.CopyFrom(group)
    _sanitize(result)
    return result


def sanitize_context(context: c.MessageContext) -> c.MessageContext:
    """A cleaned copy of a message's identity and envelope."""
    result = c.MessageContext()
    result.CopyFrom(context)
    _sanitize(result)
    return result


def sanitize_details(
    details: d.MessageDetails,
    reply_to: d.ReplyContext | None = None,
    context: c.MessageContext | None = None,
    max_text_characters: int = DEFAULT_MAX_MESSAGE_CHARACTERS,
) -> d.MessageDetails:
    """A cleaned copy of `details`. An edit's new text is cut so that the whole
    rendered message (with the reply line and context lines of `reply_to` and `context`,
    already sanitized) fits `max_text_characters`, marked as queue_svc marks a cut."""
    result = d.MessageDetails()
    result.CopyFrom(details)
    _sanitize(result)
    if result.WhichOneof("kind") == "edit" and result.edit.text:
        # Cut from the whole cleaned text, not from its proto-bounded prefix, so the
        # marker counts what the sender really wrote beyond the cut.
        full = clean_text(details.edit.text)
        result.edit.text = ""
        # What the rendered message holds besides the new text, and the space before it.
        around = len(render("", result, reply_to, context)) + 1
        limit = min(max_text_characters - around, _EDIT_TEXT_LIMIT)
        result.edit.text = truncate_marked(full, max(limit, 0))
    return result
