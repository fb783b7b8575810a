"""The typed fields a bot receives obey the rules of the text it reads: for any details,
reply and context, the sanitized fields fit the proto bounds, hold no hidden characters,
and say what the rendered text says."""

from __future__ import annotations

import math
import re
from typing import Any, cast

from chatbot.common.v1 import context_pb2 as c
from chatbot.common.v1 import details_pb2 as d
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.common.render import hidden, render
from services.common.store import DEFAULT_MAX_MESSAGE_CHARACTERS
from services.common.truncation import truncate_marked
from services.common.typed_fields import (
    UNKNOWN,
    sanitize_context,
    sanitize_details,
    sanitize_reply,
)
from services.common.validation import validate_message

LIMIT = DEFAULT_MAX_MESSAGE_CHARACTERS

# Text as senders write it and as attackers write it: ordinary letters, emoji and their
# joiners, and every kind of hidden character (controls, bidi overrides, BOM, NEL).
_NASTY = "\x00\x07\n\r\t\x1b\x7f\x85\u200b\u200d\u202e\u2066\ufeff\u2028<>&\"' "
_CHARS = st.one_of(st.characters(exclude_categories=["Cs"]), st.sampled_from(list(_NASTY)))
_SHORT_TEXT = st.text(_CHARS, max_size=40)
_LONG_TEXT = st.builds(
    lambda s, n: s * n, st.text(_CHARS, min_size=1, max_size=5), st.integers(1, 1500)
)
_STRINGS = st.one_of(_SHORT_TEXT, _SHORT_TEXT, _LONG_TEXT)
_DOUBLES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1000.0, -1000.0, 90.0, -180.0, 52.52, math.nan]),
)


def _fill(data: st.DataObject, message: Message, depth: int = 0) -> None:
    """Sets every field of `message` from hypothesis, recursively; enums only to named
    values (the wire refuses others), required enums never to UNSPECIFIED."""
    descriptor = cast("Descriptor", message.DESCRIPTOR)
    for oneof in descriptor.oneofs:
        if not oneof.name.startswith("_"):
            chosen = data.draw(st.sampled_from([f.name for f in oneof.fields]))
            _fill(data, getattr(message, chosen), depth + 1)
            if not getattr(message, chosen).ByteSize():
                getattr(message, chosen).SetInParent()
    for field in cast("list[FieldDescriptor]", list(descriptor.fields)):
        if field.containing_oneof is not None and not field.containing_oneof.name.startswith("_"):
            continue
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            nested = cast("Descriptor", field.message_type)
            if nested.full_name == "google.protobuf.Timestamp" or depth > 3:
                continue
            if field.is_repeated:
                for _ in range(data.draw(st.sampled_from([0, 1, 3, 13, 40]))):
                    _fill(data, getattr(message, field.name).add(), depth + 1)
            elif data.draw(st.booleans()):
                _fill(data, getattr(message, field.name), depth + 1)
                getattr(message, field.name).SetInParent()
            continue
        value: Any
        if field.type == FieldDescriptor.TYPE_STRING:
            value = data.draw(_STRINGS)
            if not value and data.draw(st.booleans()):
                value = "x"
        elif field.type == FieldDescriptor.TYPE_BOOL:
            value = data.draw(st.booleans())
        elif field.type == FieldDescriptor.TYPE_DOUBLE:
            value = data.draw(_DOUBLES)
        elif field.type == FieldDescriptor.TYPE_UINT32:
            value = data.draw(st.sampled_from([0, 1, 7, 86400, 2**32 - 1]))
        elif field.type == FieldDescriptor.TYPE_ENUM:
            value = data.draw(
                st.sampled_from(
                    [v.number for v in cast("EnumDescriptor", field.enum_type).values[1:]]
                )
            )
        else:
            continue
        setattr(message, field.name, value)


def _strings(message: Message, path: str = "") -> list[tuple[str, str]]:
    found = []
    for field, value in message.ListFields():
        where = f"{path}{field.name}"
        if field.type == FieldDescriptor.TYPE_STRING:
            found.append((where, value))
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            for item in value if field.is_repeated else [value]:
                found.extend(_strings(item, where + "."))
    return found


def _assert_clean(message: Message) -> None:
    assert validate_message(message) == [], validate_message(message)
    for where, value in _strings(message):
        allowed = "\n\t" if where == "edit.text" else ""
        assert not any(hidden(ch) and ch not in allowed for ch in value), (where, value)
        if where.endswith(("message_type", "stub_type", "status", "currency", "_type")):
            assert re.fullmatch(r"[A-Za-z0-9_]*", value), (where, value)
        if where.endswith("phone"):
            assert value.isdigit(), (where, value)


_SETTINGS = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@_SETTINGS
@given(data=st.data())
def test_sanitized_details_fit_the_proto_and_agree_with_the_text(data: st.DataObject) -> None:
    raw = d.MessageDetails()
    _fill(data, raw)
    reply = None
    if data.draw(st.booleans()):
        reply = d.ReplyContext()
        _fill(data, reply)
        reply = sanitize_reply(reply)
    context = None
    if data.draw(st.booleans()):
        context = c.MessageContext()
        _fill(data, context)
        context = sanitize_context(context)
    details = sanitize_details(raw, reply, context)
    _assert_clean(details)
    assert sanitize_details(details, reply, context) == details  # a fixed point
    text = render("", details, reply, context, "4917600000001@s.whatsapp.net")
    kind = details.WhichOneof("kind")
    assert kind == raw.WhichOneof("kind")
    if kind == "location":
        location = details.location
        assert math.isfinite(location.latitude) and math.isfinite(location.longitude)
        valid = (
            raw.location.coordinates_valid
            and abs(raw.location.latitude) <= 90
            and abs(raw.location.longitude) <= 180
        )
        assert location.coordinates_valid is valid
        assert ("https://maps.google.com/" in text) is valid
        assert ("(invalid coordinates)" in text) is not valid
    elif kind == "unsupported":
        assert text.endswith(f"[Unsupported message: {details.unsupported.message_type}]")
    elif kind == "edit":
        # The rendered edit fits the message bound, so queue_svc does not cut it again,
        # and it ends with exactly the typed new text.
        assert len(text) <= LIMIT
        assert truncate_marked(text, LIMIT) == text
        if details.edit.text.strip():
            assert text.endswith(details.edit.text.rstrip())
    elif kind == "group_event":
        assert "\n[Group] " in "\n" + text


@_SETTINGS
@given(data=st.data())
def test_sanitized_context_and_reply_fit_the_proto(data: st.DataObject) -> None:
    context, reply = c.MessageContext(), d.ReplyContext()
    _fill(data, context)
    _fill(data, reply)
    if not reply.quoted_message_id:
        reply.quoted_message_id = "Q"
    clean_context, clean_reply = sanitize_context(context), sanitize_reply(reply)
    _assert_clean(clean_context)
    _assert_clean(clean_reply)
    assert sanitize_context(clean_context) == clean_context
    kept = len(clean_context.mentions)
    assert kept <= 32
    # Every mention is either kept or counted.
    assert kept + clean_context.omitted_mention_count >= min(
        len(context.mentions) + context.omitted_mention_count, 2**32 - 1
    ) or any(not m.jid.strip() for m in context.mentions)


def test_latitude_1000_and_nan_are_not_valid_coordinates() -> None:
    for latitude in (1000.0, math.nan, math.inf, -math.inf):
        raw = d.MessageDetails(
            location=d.Location(latitude=latitude, longitude=13.4, coordinates_valid=True)
        )
        location = sanitize_details(raw).location
        assert location.coordinates_valid is False
        assert math.isfinite(location.latitude)
        assert render("", sanitize_details(raw)) == "📍 (invalid coordinates)"


def test_unsupported_type_keeps_letters_digits_and_underscores() -> None:
    raw = d.MessageDetails(
        unsupported=d.Unsupported(message_type="<img src=x onerror=alert(1)>\x1b[31m\u202e_v2")
    )
    assert sanitize_details(raw).unsupported.message_type == "imgsrcxonerroralert131m_v2"
    only_junk = d.MessageDetails(unsupported=d.Unsupported(message_type="<<>>\x00"))
    assert sanitize_details(only_junk).unsupported.message_type == UNKNOWN


def test_a_200000_character_edit_is_cut_like_the_text() -> None:
    raw = d.MessageDetails(
        edit=d.Edit(target_message_id="A1", text="word " * 40_000, decrypted=True)
    )
    details = sanitize_details(raw)
    text = render("", details)
    assert len(text) == LIMIT
    assert text == f"[Edited message A1] {details.edit.text}"
    # Exactly what queue_svc makes of the whole rendered text.
    assert text == truncate_marked(f"[Edited message A1] {raw.edit.text}", LIMIT)
    kept = details.edit.text.index(" … [message truncated:")
    assert details.edit.text.endswith(f"[message truncated: {200_000 - kept:,} more characters]")


def test_location_name_loses_control_characters() -> None:
    raw = d.MessageDetails(
        location=d.Location(
            latitude=52.5, longitude=13.4, coordinates_valid=True, name="Bar\x00\n\u202eTor\x1b"
        )
    )
    assert sanitize_details(raw).location.name == "Bar Tor"


def test_lists_are_bounded_and_the_rest_counted() -> None:
    contacts = d.Contacts(
        contacts=[
            d.Contact(display_name=f"c{i}", phone_numbers=[d.PhoneNumber(number="1")] * 7)
            for i in range(15)
        ],
        omitted_contact_count=2,
    )
    clean = sanitize_details(d.MessageDetails(contacts=contacts)).contacts
    assert len(clean.contacts) == 10 and clean.omitted_contact_count == 7
    assert all(len(x.phone_numbers) == 5 and x.omitted_phone_count == 2 for x in clean.contacts)
    context = sanitize_context(
        c.MessageContext(
            mentions=[c.Mention(jid=f"{i}@lid", phone="+49 (151) 1") for i in range(40)]
            + [c.Mention(jid="\x00\x01")]
        )
    )
    assert len(context.mentions) == 32 and context.omitted_mention_count == 9
    assert context.mentions[0].phone == "491511"


def test_reply_snippet_cut_by_cleaning_is_marked_truncated() -> None:
    reply = sanitize_reply(d.ReplyContext(quoted_message_id="Q1\n", snippet="y" * 300))
    assert reply.quoted_message_id == "Q1"
    assert len(reply.snippet) == 200 and reply.snippet_truncated
