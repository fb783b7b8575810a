"""Reading a Subscribe stream in batches (SubscribeRequest.max_batch): one gRPC message
carries every message ready at once, which on a busy stream costs both sides far less
CPU than one gRPC message per delivered message."""

from __future__ import annotations

from chatbot.common.v1 import message_pb2
from chatbot.queue.v1 import queue_service_pb2 as q

#: What the project's consumers ask for: a few write-sized chunks, never a long wait
#: (a batch is only what is already buffered when queue_svc writes).
SUBSCRIBE_MAX_BATCH = 500


def delivered(response: q.SubscribeResponse) -> list[message_pb2.AddressedMessage]:
    """The messages of one response, batched or not (a queue_svc older than max_batch
    answers in `message` whatever was asked)."""
    if response.messages:
        return list(response.messages)
    return [response.message] if response.HasField("message") else []
