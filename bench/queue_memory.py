"""queue_svc resident memory per 100,000 queued 100-character messages.

Starts a real queue_svc on a temporary SQLite store, starts one bot with the default
limits (200 messages and 50,000 characters per correspondent, so nothing is evicted),
writes a warm-up of 5,000 messages, then `--messages` (default 100,000) 100-character
messages over 500 correspondents with AddMessages batches of 500, and reads VmRSS
before and after (and the peak, VmHWM). The figure is (after - before) scaled to
100,000 messages: the memory the messages themselves take, not the interpreter's.
Last line: `RESULT rss_mb_per_100k=<x> rss_before_mb=<x> rss_after_mb=<x>`.

    .venv/bin/python bench/queue_memory.py [--messages 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

# Replace the script's own directory on the path: bench/queue.py would shadow the stdlib.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

import grpc  # noqa: E402
from chatbot.common.v1 import message_pb2 as m  # noqa: E402
from chatbot.queue.v1 import queue_service_pb2 as q  # noqa: E402
from chatbot.queue.v1 import queue_service_pb2_grpc as q_grpc  # noqa: E402

from bench.harness import load_average, rss_mb  # noqa: E402
from tests.helpers.processes import queue_env, start_service  # noqa: E402

BOT = "bench-memory"
CHATS = 500
BATCH = 500


def batch(start: int, count: int) -> q.AddMessagesRequest:
    requests = []
    for n in range(start, start + count):
        chat = f"4917{n % CHATS:08d}@s.whatsapp.net"
        body = f"{n:010d} " + "m" * 89  # 100 characters
        message = q.NewMessage(
            content=body,
            sender=chat,
            source=m.MESSAGE_SOURCE_USER,
            provider_message_id=f"WA-MEM-{n}",
        )
        message.originating_time.GetCurrentTime()
        requests.append(q.AddMessageRequest(bot_id=BOT, correspondent_id=chat, message=message))
    return q.AddMessagesRequest(messages=requests)


async def write(stub: q_grpc.QueueServiceAsyncStub, start: int, count: int) -> None:
    for offset in range(0, count, BATCH):
        reply = await stub.AddMessages(
            batch(start + offset, min(BATCH, count - offset)), timeout=60
        )
        assert all(r.status == q.ADD_STATUS_ADDED for r in reply.results), reply.results[:1]


def peak_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def run(messages: int) -> None:
    print(f"load average before: {load_average()}")
    root = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    queue = await start_service(
        "services.queue_svc",
        {**queue_env(root / "store.sqlite3"), "LOG_LEVEL": "WARNING"},
        root / "queue.log",
    )
    pid = queue.process.pid
    try:
        async with grpc.aio.insecure_channel(queue.address) as channel:
            stub = q_grpc.QueueServiceStub(channel)
            await stub.StartBot(q.StartBotRequest(bot_id=BOT), timeout=30)
            await write(stub, 0, 5000)
            await asyncio.sleep(1)
            before = rss_mb(pid)
            started = time.perf_counter()
            await write(stub, 5000, messages)
            elapsed = time.perf_counter() - started
            await asyncio.sleep(2)
            after, peak = rss_mb(pid), peak_mb(pid)
    finally:
        await queue.stop()
    per_100k = (after - before) * 100_000 / messages
    print(
        f"{messages} messages of 100 characters over {CHATS} correspondents written in"
        f" {elapsed:.1f} s ({messages / elapsed:.0f} msg/s)"
    )
    print(f"queue_svc VmRSS before {before:.1f} MB, after {after:.1f} MB, peak {peak:.1f} MB")
    print(f"load average after: {load_average()}")
    print(
        f"RESULT rss_mb_per_100k={per_100k:.1f} rss_before_mb={before:.1f} rss_after_mb={after:.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    args = parser.parse_args()
    asyncio.run(run(args.messages))


if __name__ == "__main__":
    main()
