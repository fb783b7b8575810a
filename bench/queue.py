"""queue_svc speed: in-process AddMessage and eviction with 0 and 10,000 placeholders
waiting, and over gRPC on loopback the batch path (AddMessages) against unary AddMessage.

Targets: placeholder_ratio <= 1.2 (the worse of the AddMessage and eviction slowdowns
caused by 10,000 waiting placeholders); stream/batch path >= 3x the unary path.
Ends with `RESULT placeholder_ratio=<x> stream_msgs_per_s=<n> unary_msgs_per_s=<n>`.

    .venv/bin/python bench/queue.py [--messages 200000] [--grpc-seconds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

# Run as a script, this file's directory comes first on sys.path, where `queue.py`
# would shadow the standard library's `queue` (used by the store). Drop it.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

import grpc  # noqa: E402
from chatbot.common.v1 import message_pb2 as m  # noqa: E402
from chatbot.queue.v1 import queue_service_pb2 as q  # noqa: E402
from chatbot.queue.v1 import queue_service_pb2_grpc as q_grpc  # noqa: E402

from services.common.store import StoreConfig, open_store  # noqa: E402
from services.queue_svc.bot_queues import BotQueues  # noqa: E402
from services.queue_svc.messages import MediaInfo, NewMessage, QueueLimits  # noqa: E402
from services.queue_svc.service import QueueService, ServiceSettings  # noqa: E402
from services.queue_svc.servicer import QueueServicer  # noqa: E402

PLACEHOLDERS = 10_000
T0 = datetime.now(UTC)
IMAGE = MediaInfo("image/jpeg", "MEDIA_KIND_IMAGE")
BATCH = 500


def _rate(messages: int, placeholders: int, max_messages: int) -> tuple[float, int]:
    """Messages per second through BotQueues.add into one correspondent; evictions."""
    bot = BotQueues("bench", "p", QueueLimits(max_messages=max_messages, max_characters=10**12))
    for _ in range(placeholders):
        bot.inject_placeholder("c1", NewMessage("", "s", "user", T0), IMAGE, str(uuid.uuid4()))
    items = [NewMessage(f"message {i}", "s", "user", T0, f"WA{i}") for i in range(messages)]
    queue = bot.queue("c1")
    before = queue.counted_count
    started = time.perf_counter()
    for i, item in enumerate(items):
        bot.add("c1", item)
        if i % 1000 == 999:
            bot.pop_ready(1000)  # as ingestion does; keeps the backlog small
    elapsed = time.perf_counter() - started
    evicted = before + messages - queue.counted_count
    assert queue.placeholder_count == placeholders
    return messages / elapsed, evicted


def _best(messages: int, placeholders: int, max_messages: int, runs: int = 3) -> float:
    return max(_rate(messages, placeholders, max_messages)[0] for _ in range(runs))


def in_process(messages: int) -> float:
    add_0 = _best(messages, 0, messages * 2)
    add_p = _best(messages, PLACEHOLDERS, messages * 2)
    evict_0 = _best(messages, 0, 200)
    evict_p = _best(messages, PLACEHOLDERS, 200)
    _, evictions = _rate(1000, PLACEHOLDERS, 200)
    assert evictions == 800  # every add past the limit evicts exactly one message
    add_ratio, evict_ratio = add_0 / add_p, evict_0 / evict_p
    print(f"in-process AddMessage, 0 placeholders:          {add_0:12,.0f} msgs/s")
    print(f"in-process AddMessage, {PLACEHOLDERS:,} placeholders:     {add_p:12,.0f} msgs/s")
    print(f"  ratio {add_ratio:.3f}")
    print(f"in-process add+evict (window 200), 0 placeholders:      {evict_0:12,.0f} evictions/s")
    print(
        f"in-process add+evict (window 200), {PLACEHOLDERS:,} placeholders: "
        f"{evict_p:12,.0f} evictions/s"
    )
    print(f"  ratio {evict_ratio:.3f}")
    return max(add_ratio, evict_ratio)


def _request(i: int) -> q.AddMessageRequest:
    message = q.NewMessage(
        content=f"message {i}",
        sender="u@s",
        source=m.MESSAGE_SOURCE_USER,
        provider_message_id=f"WA-{i}",
    )
    message.originating_time.GetCurrentTime()
    return q.AddMessageRequest(bot_id="bench", correspondent_id=f"c{i % 50}", message=message)


async def over_grpc(seconds: float) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        store = await open_store(
            StoreConfig(backend="sqlite", sqlite_path=Path(tmp) / "bench.sqlite3")
        )
        service = QueueService(store, ServiceSettings())
        await service.start()
        server = grpc.aio.server()
        q_grpc.add_QueueServiceServicer_to_server(QueueServicer(service), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = q_grpc.QueueServiceStub(channel)
                await stub.StartBot(q.StartBotRequest(bot_id="bench"))
                counter = 0

                # Unary: one AddMessage per message, each awaited (durable) in turn.
                sent, started = 0, time.perf_counter()
                while time.perf_counter() - started < seconds:
                    await stub.AddMessage(_request(counter))
                    counter += 1
                    sent += 1
                unary = sent / (time.perf_counter() - started)

                # Batch path: AddMessages of BATCH messages, each awaited in turn.
                sent, started = 0, time.perf_counter()
                while time.perf_counter() - started < seconds:
                    batch = [_request(counter + i) for i in range(BATCH)]
                    counter += BATCH
                    reply = await stub.AddMessages(q.AddMessagesRequest(messages=batch))
                    assert all(r.status == q.ADD_STATUS_ADDED for r in reply.results)
                    sent += BATCH
                stream = sent / (time.perf_counter() - started)
        finally:
            await server.stop(None)
            await service.shutdown()
            await store.close()
    print(f"gRPC loopback unary AddMessage:              {unary:12,.0f} msgs/s")
    print(f"gRPC loopback AddMessages (batches of {BATCH}):  {stream:12,.0f} msgs/s")
    print(f"  ratio {stream / unary:.1f}x")
    return stream, unary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--grpc-seconds", type=float, default=3.0)
    args = parser.parse_args()
    ratio = in_process(args.messages)
    stream, unary = asyncio.run(over_grpc(args.grpc_seconds))
    print(
        f"RESULT placeholder_ratio={ratio:.3f} stream_msgs_per_s={stream:.0f} "
        f"unary_msgs_per_s={unary:.0f}",
        flush=True,
    )


if __name__ == "__main__":
    main()
