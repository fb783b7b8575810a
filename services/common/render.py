"""The text a bot sees for a structured WhatsApp message, rendered in this one place.

Node sends locations, contacts, polls, votes, reactions, events, interactive replies,
group invites, edits, deletions, business and commerce messages, group events,
unreadable messages, timer changes, identity changes and unknown types as
`chatbot.common.v1.MessageDetails`; the gateway turns them into the text of an ordinary
message with this module, so every bot reads them the same way. The message's context
adds short marker lines (channel post, owner, view-once, ad reply). Every value comes
from the sender: it is stripped of control characters and bounded here again, whatever
the wire already enforced; services.common.typed_fields holds the typed fields to the
same rules.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from datetime import UTC

from chatbot.common.v1 import context_pb2 as c
from chatbot.common.v1 import details_pb2 as d
from google.protobuf import json_format
from google.protobuf.timestamp_pb2 import Timestamp

#: Bounds of what one rendered piece may add; the wire bounds each field already.
MAX_FIELD_CHARACTERS = 1024
MAX_LISTED_ITEMS = 12
#: Business choices and group participants are listed up to their proto bounds.
MAX_LISTED_CHOICES = 20
MAX_LISTED_PEOPLE = 32
SNIPPET_CHARACTERS = 200

_TYPE_NAME = re.compile(r"[^A-Za-z0-9_]")
_INTERACTIVE_KIND = {
    d.INTERACTIVE_REPLY_KIND_BUTTON: "Button",
    d.INTERACTIVE_REPLY_KIND_LIST: "List choice",
    d.INTERACTIVE_REPLY_KIND_TEMPLATE_BUTTON: "Button",
    d.INTERACTIVE_REPLY_KIND_INTERACTIVE: "Reply",
}


def hidden(char: str) -> bool:
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
    if not (value.isascii() and value.isprintable()):  # else nothing is hidden (fast)
        value = "".join(" " if hidden(c) else c for c in value)
    text = " ".join(value.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def clean_text(value: str) -> str:
    """A message's own text (an edit's new text): line breaks and tabs stay, every other
    hidden character goes. Not cut: the queue cuts the whole message, marked."""
    if value.isascii() and value.isprintable():
        return value
    return "".join(c for c in value if c in "\n\t" or not hidden(c))


def name_characters(value: str, limit: int = 64) -> str:
    """A name WhatsApp gives (a message or stub type, a status) reduced to letters,
    digits and underscores; may be empty."""
    return _TYPE_NAME.sub("", value)[:limit]


def sanitize_type_name(value: str) -> str:
    """A WhatsApp message type name reduced to letters, digits and underscores."""
    return name_characters(value) or "unknown"


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


_BUSINESS_KIND = {
    d.BUSINESS_MESSAGE_KIND_BUTTONS: "Buttons",
    d.BUSINESS_MESSAGE_KIND_LIST: "List",
    d.BUSINESS_MESSAGE_KIND_TEMPLATE: "Template",
    d.BUSINESS_MESSAGE_KIND_INTERACTIVE: "Interactive",
}
_COMMERCE_KIND = {
    d.COMMERCE_KIND_PAYMENT_REQUEST: "Payment request",
    d.COMMERCE_KIND_PAYMENT: "Payment",
    d.COMMERCE_KIND_ORDER: "Order",
    d.COMMERCE_KIND_ORDER_STATUS: "Order update",
    d.COMMERCE_KIND_PRODUCT: "Product",
    d.COMMERCE_KIND_INVOICE: "Invoice",
}


def _business(message: d.BusinessMessage) -> str:
    kind = _BUSINESS_KIND.get(message.kind, "Business message")
    title = " — ".join(x for x in (clean(message.header), clean(message.body, 4096)) if x)
    lines = [f"[{kind}] {title or '(no text)'}"]
    for i, choice in enumerate(message.choices[:MAX_LISTED_CHOICES], start=1):
        line = f"{i}. {clean(choice.title) or clean(choice.id, 256) or '(no title)'}"
        if clean(choice.description):
            line += f" — {clean(choice.description)}"
        lines.append(line)
    omitted = message.omitted_choice_count + max(0, len(message.choices) - MAX_LISTED_CHOICES)
    if omitted:
        lines.append(f"({omitted} more choices not shown)")
    return "\n".join(lines)


def _commerce(commerce: d.Commerce) -> str:
    head = _COMMERCE_KIND.get(commerce.kind, "Commerce")
    reference = clean(commerce.reference_id, 256)
    if reference:
        head += f" {reference}"
    parts = [clean(commerce.title)] if clean(commerce.title) else []
    if commerce.item_count:
        parts.append(f"{commerce.item_count} item{'' if commerce.item_count == 1 else 's'}")
    amount = " ".join(x for x in (clean(commerce.amount, 64), clean(commerce.currency, 8)) if x)
    if amount:
        parts.append(amount)
    if clean(commerce.status, 64):
        parts.append(f"status {clean(commerce.status, 64)}")
    text = f"[{head}: {', '.join(parts)}]" if parts else f"[{head}]"
    if clean(commerce.text, 4096):
        text += f" {clean(commerce.text, 4096)}"
    return text


def _person(jid: str, phone: str) -> str:
    """A person as the bot reads them: the phone number when known, else the id."""
    return f"+{phone}" if phone else (clean(jid, 256) or "someone")


def _people(people: list[c.Mention], omitted: int) -> str:
    names = [_person(p.jid, p.phone) for p in people[:MAX_LISTED_PEOPLE]]
    omitted += max(0, len(people) - MAX_LISTED_PEOPLE)
    if omitted:
        names.append(f"{omitted} more")
    return ", ".join(names)


def _group_event(event: d.GroupEvent, actor: str) -> str:
    people = _people(list(event.participants), event.omitted_participant_count)
    value = clean(event.new_value, 2048)
    action = event.action
    if action in (d.GROUP_ACTION_LEAVE, d.GROUP_ACTION_JOIN):
        verb = "left" if action == d.GROUP_ACTION_LEAVE else "joined using an invite link"
        return f"[Group] {people or actor} {verb}"
    said = {
        d.GROUP_ACTION_ADD: f"added {people}",
        d.GROUP_ACTION_REMOVE: f"removed {people}",
        d.GROUP_ACTION_PROMOTE: f"made {people} admin",
        d.GROUP_ACTION_DEMOTE: f"removed {people} as admin",
        d.GROUP_ACTION_SUBJECT: f'changed the subject to "{value}"',
        d.GROUP_ACTION_DESCRIPTION: (
            f'changed the description to "{value}"' if value else "removed the description"
        ),
        d.GROUP_ACTION_ICON: "changed the group picture",
        d.GROUP_ACTION_SETTINGS: "changed the group settings" + (f": {value}" if value else ""),
        d.GROUP_ACTION_CREATE: f'created the group "{value}"' if value else "created the group",
    }.get(action)
    if said is None:
        said = f"group event {sanitize_type_name(event.stub_type)}"
        if people:
            said += f": {people}"
    return f"[Group] {actor} {said}"


def _duration(seconds: int) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'' if count == 1 else 's'}"
    return f"{seconds} second{'' if seconds == 1 else 's'}"


def _timer(timer: d.DisappearingTimer) -> str:
    if not timer.expiration_seconds:
        return "[Disappearing messages turned off]"
    return f"[Disappearing messages set to {_duration(timer.expiration_seconds)}]"


def _edit(edit: d.Edit) -> str:
    # The new text keeps its lines: it is the message itself, as in a text message.
    target = clean(edit.target_message_id, 256)
    if not edit.text and not edit.decrypted:
        return f"[Edited message {target}] (new text not readable)"
    return f"[Edited message {target}] {clean_text(edit.text)}".rstrip()


def _identity_change(change: d.IdentityChange) -> str:
    text = (
        f"[Identity] {clean(change.previous_correspondent_id, 256)}"
        f" is now {clean(change.correspondent_id, 256)}"
    )
    phone = clean(change.phone, 20) if change.HasField("phone") else ""
    return f"{text} (+{phone})" if phone else text


def render_details(details: d.MessageDetails, sender: str = "") -> str:
    """The text for one structured message (without its reply context). `sender` names
    who did what in a group event (see `sender_name`)."""
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
        return _edit(details.edit)
    if kind == "deletion":
        return f"[Message {clean(details.deletion.target_message_id, 256)} deleted]"
    if kind == "unsupported":
        return f"[Unsupported message: {sanitize_type_name(details.unsupported.message_type)}]"
    if kind == "identity_change":
        return _identity_change(details.identity_change)
    if kind == "business_message":
        return _business(details.business_message)
    if kind == "commerce":
        return _commerce(details.commerce)
    if kind == "group_event":
        return _group_event(details.group_event, clean(sender, 256) or "someone")
    if kind == "undecryptable":
        return "[A message from this person could not be read]"
    if kind == "disappearing_timer":
        return _timer(details.disappearing_timer)
    return "[Unsupported message: unknown]"


def sender_name(sender: str, context: c.MessageContext | None) -> str:
    """Who wrote a message, as a group event names them: the phone number when known."""
    if context is not None and context.HasField("sender_phone") and context.sender_phone:
        return _person(sender, context.sender_phone)
    return clean(sender, 256)


def render_context(context: c.MessageContext) -> str:
    """The lines put before a message for what its envelope says, or "". Only what
    changes how a message reads is in the text (a channel post is nobody talking to the
    bot, the owner took over, a view-once photo cannot be asked for again, the lead came
    from an ad); identity, mentions, forwarding, albums and the timer are typed only."""
    markers = []
    if context.chat_kind == c.CHAT_KIND_NEWSLETTER:
        markers.append("[Channel post]")
    if context.from_owner:
        markers.append("[Owner]")
    if context.view_once:
        markers.append("[View once]")
    lines = [" ".join(markers)] if markers else []
    if context.HasField("ad_reply"):
        title = clean(context.ad_reply.title) or clean(context.ad_reply.body, 2048)
        lines.append(f'[Reply to ad "{title}"]' if title else "[Reply to an ad]")
    return "\n".join(lines)


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
    text: str,
    details: d.MessageDetails | None = None,
    reply_to: d.ReplyContext | None = None,
    context: c.MessageContext | None = None,
    sender: str = "",
) -> str:
    """The whole text the bot sees: the context lines, the reply line, then the message
    or its details."""
    body = render_details(details, sender_name(sender, context)) if details is not None else text
    lines = [render_context(context)] if context is not None else []
    if reply_to is not None:
        lines.append(render_reply(reply_to))
    return "\n".join([*(line for line in lines if line), body])


def reply_prefix(details_json: str | None) -> str:
    """The context and reply lines (with their newline) for a queued message's stored
    details JSON (see services/queue_svc/convert.py), or "" when there are none. Used
    where media text is set, long after the frame: the lines are rendered here like
    every other."""
    if details_json is None:
        return ""
    parts = json.loads(details_json)
    lines = []
    context = parts.get("context")
    if isinstance(context, dict):
        lines.append(
            render_context(
                json_format.ParseDict(context, c.MessageContext(), ignore_unknown_fields=True)
            )
        )
    reply = parts.get("replyTo")
    if isinstance(reply, dict):
        reply_to = json_format.ParseDict(reply, d.ReplyContext(), ignore_unknown_fields=True)
        lines.append(render_reply(reply_to))
    return "".join(line + "\n" for line in lines if line)
