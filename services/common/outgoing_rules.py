"""The one rule of an outgoing message that depends on its kind (the proto options can
only say "required" for every kind): which of text, media, emoji and target it needs.

whatsapp_baileys_server/src/wire.js applies the same rule with the same wording, so the
gateway and Node give every outgoing frame the same verdict.
"""

from __future__ import annotations

from chatbot.wire.v1 import frames_pb2 as w

OUTGOING_MESSAGE = "chatbot.wire.v1.OutgoingMessage"

MEDIA_KINDS = frozenset(
    {
        w.OUTGOING_KIND_IMAGE,
        w.OUTGOING_KIND_DOCUMENT,
        w.OUTGOING_KIND_AUDIO,
        w.OUTGOING_KIND_VOICE_NOTE,
        w.OUTGOING_KIND_VIDEO,
    }
)
TEXT_KINDS = frozenset({w.OUTGOING_KIND_UNSPECIFIED, w.OUTGOING_KIND_TEXT})


def outgoing_problems(message: w.OutgoingMessage, path: str) -> list[str]:
    """What the message's kind requires and it lacks, as `path: problem`."""
    kind = message.kind
    if kind not in w.OutgoingKind.values():
        return []  # already reported as an unknown enum value
    name = w.OutgoingKind.Name(kind)
    problems: list[str] = []
    if kind in TEXT_KINDS and not message.text:
        # Worded as before kinds existed: a text message without text.
        problems.append(f"{path}text: required")
    if kind in MEDIA_KINDS and not message.HasField("media"):
        problems.append(f"{path}media: required for {name}")
    if kind not in MEDIA_KINDS and message.HasField("media"):
        problems.append(f"{path}media: not allowed for {name}")
    if kind == w.OUTGOING_KIND_REACTION and not message.HasField("reaction_emoji"):
        problems.append(f"{path}reaction_emoji: required for {name}")
    if kind in (w.OUTGOING_KIND_REACTION, w.OUTGOING_KIND_READ) and not message.target_message_id:
        problems.append(f"{path}target_message_id: required for {name}")
    return problems
