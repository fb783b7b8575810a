"""Text path end to end: text frames over the gateway WebSocket → queue_svc → a
resumable Subscribe consumer, all real processes on loopback, against two baselines
measured in the same run: a raw grpc.aio unary echo between two processes (the cost
floor of one hop) and a raw aiohttp WebSocket echo.

- saturation: frames sent as fast as the gateway acknowledges them (window of 1,024 in
  flight, as many as the gateway reads ahead); messages/s = messages the consumer
  received ÷ (last arrival - first send);
- latency: a fixed offered load (default 1,000 msg/s, 10 frames every 10 ms), frame sent
  → message received by the consumer, p50/p99 after a 1 s warm-up.
The client (sender + consumer) shares the 2 cores with the services, as a real Node
server and bot would on one host. The sender batches as the real Node server does: it
offers frame batches in the handshake (services/common/wire_batch.py), sends the frames
of one event-loop turn as one WebSocket message and reads batched acks; every frame is
still acknowledged and counted on Subscribe. Last line: `RESULT text_msgs_per_s=<n>
grpc_echo_per_s=<n> ws_echo_per_s=<n> text_vs_echo=<x> text_p50_ms=<x> text_p99_ms=<x>`.

    .venv/bin/python bench/text_path.py [--seconds 10] [--rate 1000] [--profile DIR]
        [--unbatched]  (one frame per WebSocket message, as a Node without frame batches)
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import sys
import tempfile
import time
from pathlib import Path

# Replace the script's own directory on the path: bench/queue.py would shadow the stdlib.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

import aiohttp  # noqa: E402
import grpc  # noqa: E402

from bench.harness import (  # noqa: E402
    Outbox,
    Stack,
    TimedConsumer,
    cpu_seconds,
    load_average,
    percentile,
    start_bots,
    text_frame,
)
from bench.profiles import Profiler  # noqa: E402
from services.common import event_loop  # noqa: E402
from tests.helpers.processes import free_port, start_process  # noqa: E402

BOTS = [f"bench-text-{i}" for i in range(4)]
CHATS = [f"49151{i:07d}@s.whatsapp.net" for i in range(50)]
# Frames encoded ahead per second of the saturation phase (more are encoded as sent).
PREBUILT_PER_SECOND = 8000
# 100 characters, the size the memory target is stated for.
BODY = ("The quick brown fox jumps over the lazy dog. " * 3)[:100]


def frame_for(tag: str, n: int) -> tuple[str, str, str]:
    """(frame id, provider id, frame text) of the `n`th frame of a phase."""
    bot, chat = BOTS[n % len(BOTS)], CHATS[(n // len(BOTS)) % len(CHATS)]
    provider_id = f"{tag}-{n}"
    return (
        f"f-{provider_id}",
        provider_id,
        text_frame(f"f-{provider_id}", bot, chat, provider_id, BODY),
    )


async def grpc_echo(address: str, seconds: float, concurrency: int = 64) -> float:
    """Unary echo calls/s with `concurrency` calls in flight."""
    payload = frame_for("echo", 0)[2].encode()
    async with grpc.aio.insecure_channel(address) as channel:
        echo = channel.unary_unary("/bench.Echo/Echo", None, None)
        await echo(payload)
        done = 0
        deadline = time.perf_counter() + seconds

        async def caller() -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                await echo(payload)
                done += 1

        started = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(concurrency)))
        return done / (time.perf_counter() - started)


async def ws_echo(address: str, seconds: float, window: int = 1024) -> float:
    """WebSocket echo messages/s with `window` messages in flight."""
    payload = frame_for("echo", 0)[2]
    room = asyncio.Semaphore(window)
    received = 0
    async with aiohttp.ClientSession() as http, http.ws_connect(f"http://{address}/ws") as ws:

        async def reader() -> None:
            nonlocal received
            async for _ in ws:
                received += 1
                room.release()

        reading = asyncio.create_task(reader())
        started = time.perf_counter()
        deadline = started + seconds
        while time.perf_counter() < deadline:
            await room.acquire()
            await ws.send_str(payload)
        elapsed = time.perf_counter() - started
        reading.cancel()
        await asyncio.gather(reading, return_exceptions=True)
    return received / elapsed


def prebuild(seconds: float) -> list[tuple[str, str, str]]:
    """The saturation phase's frames, encoded before its clock and CPU count start: the
    client shares the cores with the services it measures (every frame is still sent,
    acknowledged and counted on Subscribe)."""
    return [frame_for("sat", n) for n in range(int(seconds * PREBUILT_PER_SECOND))]


async def saturation(
    outbox: Outbox, consumer: TimedConsumer, seconds: float, prebuilt: list[tuple[str, str, str]]
) -> tuple[int, float]:
    ids: set[str] = set()
    started = time.perf_counter()
    deadline = started + seconds
    for n in itertools.count():
        if time.perf_counter() >= deadline:
            break
        frame_id, provider_id, text = prebuilt[n] if n < len(prebuilt) else frame_for("sat", n)
        ids.add(provider_id)
        await outbox.send(frame_id, text)
    await outbox.drain(60)
    if not await consumer.wait_for(ids, 60):
        raise RuntimeError(f"saturation: {len(ids - consumer.arrived.keys())} messages missing")
    last = max(consumer.arrived[i][0] for i in ids)
    return len(ids), len(ids) / (last - started)


async def paced(
    outbox: Outbox, consumer: TimedConsumer, seconds: float, rate: int
) -> tuple[list[float], int]:
    """Latencies (ms) of frames offered at `rate`/s, after a 1 s warm-up."""
    tick, per_tick = 0.01, max(1, rate // 100)
    ids: list[str] = []
    started = time.perf_counter()
    n = 0
    for step in itertools.count():
        due = started + step * tick
        if due - started >= seconds:
            break
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        for _ in range(per_tick):
            frame_id, provider_id, text = frame_for("paced", n)
            n += 1
            ids.append(provider_id)
            await outbox.send(frame_id, text)
    await outbox.drain(60)
    if not await consumer.wait_for(set(ids), 60):
        raise RuntimeError("paced: messages missing")
    latencies = [
        (consumer.arrived[i][0] - outbox.outcomes[f"f-{i}"].sent_at) * 1000
        for i in ids
        if outbox.outcomes[f"f-{i}"].sent_at - started >= 1.0
    ]
    return latencies, n


async def run(seconds: float, rate: int, profile: Path | None, batched: bool) -> None:
    print(f"load average before: {load_average()}")
    root = Path(tempfile.mkdtemp(prefix="bench-text-"))
    echo = await start_process(
        "echo",
        [sys.executable, "bench/echo_server.py"],
        {},
        root / "echo.log",
        ready=lambda line: line.split("listening on ", 1)[1] if "listening on" in line else None,
    )
    grpc_address, ws_address = echo.address.split()
    try:
        grpc_rate = await grpc_echo(grpc_address, seconds)
        print(f"grpc.aio unary echo (64 in flight, {seconds:.0f} s): {grpc_rate:.0f} calls/s")
        ws_rate = await ws_echo(ws_address, seconds)
        print(f"aiohttp WebSocket echo (1,024 in flight, {seconds:.0f} s): {ws_rate:.0f} msg/s")
    finally:
        await echo.stop()

    stack = Stack(root, free_port())
    await stack.start("queue_svc")
    await stack.start("gateway")
    await start_bots(stack.queue_address, BOTS)
    consumer = TimedConsumer(stack.queue_address, BOTS)
    consumer.start()
    outbox = Outbox(stack.ws_url, window=1024, batched=batched)
    await outbox.start()
    print(
        "sender: frame batches as the Node server sends them (accepted by the gateway)"
        if outbox.batched
        else "sender: one frame per WebSocket message (no frame batches)"
    )
    try:
        prebuilt = prebuild(seconds)
        pids = {name: stack.pid(name) for name in ("gateway", "queue_svc")}
        pids["client"] = os.getpid()
        cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        profiler = None
        if profile is not None and Profiler.available():
            profiler = Profiler(profile, {n: pids[n] for n in ("gateway", "queue_svc")}, seconds)
            await profiler.start()
        messages_before = outbox.messages_sent
        count, text_rate = await saturation(outbox, consumer, seconds, prebuilt)
        ws_messages = outbox.messages_sent - messages_before
        if profiler is not None:
            for name, summary in (await profiler.finish()).items():
                print(f"py-spy profile of {name} at saturation: {summary}")
        print(
            f"text path at saturation ({seconds:.0f} s, {count} messages in {ws_messages}"
            f" WebSocket messages): {text_rate:.0f} msg/s"
        )
        cpu_us = {
            name: (cpu_seconds(pid) - cpu_before[name]) / count * 1e6 for name, pid in pids.items()
        }
        services_us = cpu_us["gateway"] + cpu_us["queue_svc"]
        print(
            "CPU per message, µs: "
            + " ".join(f"{name}={us:.0f}" for name, us in cpu_us.items())
            + f"; services alone on 2 idle cores could carry ≈ {2e6 / services_us:.0f} msg/s"
            f" (the gateway alone, one core: ≈ {1e6 / cpu_us['gateway']:.0f} msg/s)"
        )
        latencies, offered = await paced(outbox, consumer, seconds, rate)
        p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
        print(
            f"text path at {rate} msg/s offered ({offered} messages): latency ms"
            f" p50={p50:.1f} p90={percentile(latencies, 0.9):.1f} p99={p99:.1f}"
            f" max={max(latencies):.1f}"
        )
        statuses = {o.status for o in outbox.outcomes.values()}
        print(f"ack statuses seen: {sorted(statuses)}; subscribe reconnects: {consumer.reconnects}")
    finally:
        await outbox.close()
        await consumer.close()
        await stack.stop_all()
    print(f"load average after: {load_average()}")
    print(
        f"RESULT text_msgs_per_s={text_rate:.0f} grpc_echo_per_s={grpc_rate:.0f}"
        f" ws_echo_per_s={ws_rate:.0f} text_vs_echo={text_rate / grpc_rate:.2f}"
        f" text_p50_ms={p50:.1f} text_p99_ms={p99:.1f}"
        f" gateway_cpu_us_per_msg={cpu_us['gateway']:.0f}"
        f" queue_svc_cpu_us_per_msg={cpu_us['queue_svc']:.0f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10, help="per measurement")
    parser.add_argument("--rate", type=int, default=1000, help="offered load, msg/s")
    parser.add_argument(
        "--profile", type=Path, help="directory for py-spy profiles of the saturation phase"
    )
    parser.add_argument(
        "--unbatched",
        action="store_true",
        help="one frame per WebSocket message, as a Node without frame batches",
    )
    args = parser.parse_args()
    # The client plays Node and the bot logic on the loop the services use (EVENT_LOOP).
    event_loop.run(
        run(args.seconds, args.rate, args.profile, not args.unbatched),
        event_loop.event_loop_choice(os.environ),
    )


if __name__ == "__main__":
    main()
