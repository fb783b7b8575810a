"""The text a bot sees for a structured WhatsApp message, rendered in this one place.

Node sends locations, contacts, polls, votes, reactions, events, interactive replies,
group invites, edits, deletions and unknown types as `chatbot.common.v1.MessageDetails`;
the gateway turns them into the text of an ordinary message with this module, so every
bot reads them the same way. Every value comes from the sender: it is stripped of
control characters and bounded here again, whatever the wire already enforced.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from datetime import UTC

from chatbot.common.v1 import details_pb2 as d
from google.protobuf import json_format
from google.protobuf.timestamp_pb2 import Timestamp

#: Bounds of what one rendered piece may add; the wire bounds each field already.
MAX_FIELD_CHARACTERS = 1024
MAX_LISTED_ITEMS = 12
SNIPPET_CHARACTERS = 200

_TYPE_NAME = re.compile(r"[^A-Za-z0-9_]")
_INTERACTIVE_KIND = {
    d.INTERACTIVE_REPLY_KIND_BUTTON: "Button",
    d.INTERACTIVE_REPLY_KIND_LIST: "List choice",
    d.INTERACTIVE_REPLY_KIND_TEMPLATE_BUTTON: "Button",
    d.INTERACTIVE_REPLY_KIND_INTERACTIVE: "Reply",
}


def _hidden(char: str) -> bool:
    """Control characters, lone surrogates, and format characters such as bidi overrides
    that could disguise text; the zero-width joiner and tag characters stay because
    emoji sequences (families, flags) are built from them. Unassigned code points stay:
    they may be emoji newer than this Python's Unicode tables."""
    category = unicodedata.category(char)
    if category in ("Cc", "Cs"):
        return True
    return category == "Cf" and char != "\u200d" and not "\U000e0020" <= char <= "\U000e007f"


def clean(value: str, limit: int = MAX_FIELD_CHARACTERS) -> str:
    """One line of sender text: hidden characters become spaces, runs of whitespace
    collapse, and the result is cut to `limit` characters (with "…")."""
    text = " ".join("".join(" " if _hidden(c) else c for c in value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def sanitize_type_name(value: str) -> str:
    """A WhatsApp message type name reduced to letters, digits and underscores."""
    return _TYPE_NAME.sub("", value)[:64] or "unknown"


def coordinates_valid(latitude: float, longitude: float) -> bool:
    return (
        math.isfinite(latitude)
        and math.isfinite(longitude)
        and -90.0 <= latitude <= 90.0
        and -180.0 <= longitude <= 180.0
    )


def _short_number(value: float) -> str:
    # The shortest decimal form, so the link reads like one a person would paste.
    return repr(round(value, 6)).removesuffix(".0")


def _location(location: d.Location) -> str:
    parts = [clean(x, 256) for x in (location.name, location.address) if clean(x)]
    head = "📍 Live location" if location.live else "📍"
    if parts:
        head += (": " if location.live else " ") + ", ".join(parts)
    lat, lon = location.latitude, location.longitude
    if location.coordinates_valid and coordinates_valid(lat, lon):
        head += (
            f" ({lat:.5f}, {lon:.5f})"
            f" https://maps.google.com/?q={_short_number(lat)},{_short_number(lon)}"
        )
    else:
        head += " (invalid coordinates)"
    if location.comment and clean(location.comment):
        head += f" — {clean(location.comment)}"
    return head


def _contacts(contacts: d.Contacts) -> str:
    cards = []
    for contact in contacts.contacts[:MAX_LISTED_ITEMS]:
        numbers = [clean(p.number, 64) for p in contact.phone_numbers[:MAX_LISTED_ITEMS]]
        if contact.omitted_phone_count:
            numbers.append(f"{contact.omitted_phone_count} more")
        fields = [clean(contact.display_name, 256) or "unnamed", *numbers]
        if contact.vcard_truncated:
            fields.append("card truncated")
        cards.append(f"[Contact: {', '.join(fields)}]")
    omitted = contacts.omitted_contact_count + max(0, len(contacts.contacts) - MAX_LISTED_ITEMS)
    if omitted:
        cards.append(f"[{omitted} more contacts not shown]")
    return "\n".join(cards) if cards else "[Contact: empty card]"


def _poll(poll: d.Poll) -> str:
    lines = [f"[Poll] {clean(poll.question) or '(no question)'}"]
    lines += [
        f"{i}. {clean(option.name, 256)}"
        for i, option in enumerate(poll.options[:MAX_LISTED_ITEMS], start=1)
    ]
    omitted = poll.omitted_option_count + max(0, len(poll.options) - MAX_LISTED_ITEMS)
    if omitted:
        lines.append(f"({omitted} more options not shown)")
    if poll.selectable_count > 1:
        lines.append(f"(choose up to {poll.selectable_count})")
    return "\n".join(lines)


def _poll_vote(vote: d.PollVote) -> str:
    poll_id = clean(vote.poll_message_id, 256)
    if not vote.decrypted:
        return f"[Poll vote on poll {poll_id}: the poll is unknown, the choice could not be read]"
    names = [f'"{clean(o.name, 256)}"' for o in vote.selected_options[:MAX_LISTED_ITEMS]]
    question = clean(vote.poll_question) or poll_id
    if not names:
        return f'[Poll vote] withdrew the vote on "{question}"'
    return f'[Poll vote] voted for {", ".join(names)} on "{question}"'


def _reaction(reaction: d.Reaction) -> str:
    target = (
        f"message {clean(reaction.target_message_id, 256)}"
        if clean(reaction.target_message_id)
        else "an unknown message"
    )
    if reaction.removed or not clean(reaction.emoji):
        return f"[Reaction removed from {target}]"
    return f"[Reaction {clean(reaction.emoji, 32)} to {target}]"


def _time(value: Timestamp) -> str:
    return value.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%d %H:%M UTC")


def _event(event: d.Event) -> str:
    text = f"[Event{' cancelled' if event.canceled else ''}] {clean(event.name) or '(no name)'}"
    if event.HasField("start_time"):
        text += f", {_time(event.start_time)}"
        if event.HasField("end_time"):
            text += f" to {_time(event.end_time)}"
    if event.HasField("location"):
        place = [clean(x, 256) for x in (event.location.name, event.location.address) if clean(x)]
        if place:
            text += f", at {', '.join(place)}"
    if event.HasField("description") and clean(event.description):
        text += f"\n{clean(event.description, 2048)}"
    return text


def _interactive(reply: d.InteractiveReply) -> str:
    kind = _INTERACTIVE_KIND.get(reply.kind, "Reply")
    title = clean(reply.selected_title) or "(no title)"
    selected_id = clean(reply.selected_id, 256)
    return f'[{kind}: "{title}"' + (f" (id {selected_id})]" if selected_id else "]")


def _group_invite(invite: d.GroupInvite) -> str:
    name = clean(invite.group_name, 256) or clean(invite.group_id, 256) or "a group"
    text = f'[Group invite: "{name}"]'
    if invite.HasField("caption") and clean(invite.caption):
        text += f" {clean(invite.caption)}"
    return text


def _identity_change(change: d.IdentityChange) -> str:
    text = (
        f"[Identity] {clean(change.previous_correspondent_id, 256)}"
        f" is now {clean(change.correspondent_id, 256)}"
    )
    phone = clean(change.phone, 20) if change.HasField("phone") else ""
    return f"{text} (+{phone})" if phone else text


def render_details(details: d.MessageDetails) -> str:
    """The text for one structured message (without its reply context)."""
    kind = details.WhichOneof("kind")
    if kind == "location":
        return _location(details.location)
    if kind == "contacts":
        return _contacts(details.contacts)
    if kind == "poll":
        return _poll(details.poll)
    if kind == "poll_vote":
        return _poll_vote(details.poll_vote)
    if kind == "reaction":
        return _reaction(details.reaction)
    if kind == "event":
        return _event(details.event)
    if kind == "interactive_reply":
        return _interactive(details.interactive_reply)
    if kind == "group_invite":
        return _group_invite(details.group_invite)
    if kind == "edit":
        # The new text keeps its lines: it is the message itself, as in a text message.
        target = clean(details.edit.target_message_id, 256)
        return f"[Edited message {target}] {details.edit.text}".rstrip()
    if kind == "deletion":
        return f"[Message {clean(details.deletion.target_message_id, 256)} deleted]"
    if kind == "unsupported":
        return f"[Unsupported message: {sanitize_type_name(details.unsupported.message_type)}]"
    if kind == "identity_change":
        return _identity_change(details.identity_change)
    return "[Unsupported message: unknown]"


def render_reply(reply_to: d.ReplyContext) -> str:
    """The line put before a message that quotes an earlier one."""
    target = clean(reply_to.quoted_message_id, 256)
    snippet = clean(reply_to.snippet, SNIPPET_CHARACTERS)
    if not snippet:
        return f"[Reply to message {target}]"
    if reply_to.snippet_truncated and not snippet.endswith("…"):
        snippet += "…"
    return f'[Reply to message {target}: "{snippet}"]'


def render(
    text: str, details: d.MessageDetails | None = None, reply_to: d.ReplyContext | None = None
) -> str:
    """The whole text the bot sees: the reply line, then the message or its details."""
    body = render_details(details) if details is not None else text
    return f"{render_reply(reply_to)}\n{body}" if reply_to is not None else body


def reply_prefix(details_json: str | None) -> str:
    """The reply line (with its newline) for a queued message's stored details JSON
    (see services/queue_svc/convert.py), or "" when it quotes nothing. Used where media
    text is set, long after the frame: the line is rendered here like every other."""
    if details_json is None:
        return ""
    reply = json.loads(details_json).get("replyTo")
    if not isinstance(reply, dict):
        return ""
    reply_to = json_format.ParseDict(reply, d.ReplyContext(), ignore_unknown_fields=True)
    return render_reply(reply_to) + "\n"
