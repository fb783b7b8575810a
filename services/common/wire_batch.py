"""Several frames in one WebSocket message, one per line, when both sides agreed to it.

Node sends the handshake header `BATCH_HEADER: 1`; a gateway that answers the upgrade
with the same header may write the acknowledgements of one event-loop turn as one
message, and Node may then send the frames it has ready as one message. A peer that does
not send (or answer) the header keeps one frame per message, so either side may be older.
(A header, not a WebSocket subprotocol: Node's `ws` drops a connection whose server
selects none of the offered subprotocols, which is what an older gateway would do.)

Canonical proto3 JSON holds no raw newline (one inside a string is escaped), so a
newline can only separate frames.
"""

from __future__ import annotations

#: The handshake header that offers (request) and accepts (101 response) frame batches.
BATCH_HEADER = "Chatbot-Wire-Batch"
BATCH_VERSION = "1"


def split_frames(data: str | bytes) -> list[str] | list[bytes]:
    """The frames of one WebSocket message of a batching connection, in order.

    Empty lines separate nothing and are skipped; a message without a newline is one
    frame (which may itself be empty or broken: the parser answers it as usual).
    """
    if isinstance(data, bytes):
        if b"\n" not in data:
            return [data]
        return [part for part in data.split(b"\n") if part]
    if "\n" not in data:
        return [data]
    return [part for part in data.split("\n") if part]


def join_frames(frames: list[str]) -> str:
    """One WebSocket message holding the frames (each canonical JSON, no raw newline)."""
    return "\n".join(frames)
