"""End-to-end media throughput: real queue_svc + media_svc processes, stub processors.

Writes definitions with zero-delay stubs, starts both services on a temporary SQLite
store, subscribes, injects N placeholders (concurrently, coalesced per event-loop turn into
InjectPlaceholders calls as the gateway sends them; `--unary`: one InjectPlaceholder each), and
measures placeholder injected → text delivered to the subscriber (jobs/s) over a burst,
then pickup latency (job created → first claim, from media_svc's claim trace,
MEDIA_SVC_TRACE_PATH) over paced jobs injected 10 ms apart, so the figure is the wake-up
latency rather than queueing behind the burst (the burst's pickup is printed too).
Last line: `RESULT jobs_per_s=<n> pickup_p50_ms=<x> pickup_p99_ms=<x>`.

    .venv/bin/python bench/media.py [--jobs 5000] [--replicas 1] [--concurrency 64] [--unary]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

# Replace the script's own directory on the path: bench/queue.py would shadow the stdlib.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

import grpc  # noqa: E402
from chatbot.queue.v1 import queue_service_pb2, queue_service_pb2_grpc  # noqa: E402

from bench.harness import cpu_seconds  # noqa: E402
from services.common.call_batcher import CallBatcher  # noqa: E402
from services.common.store import StoreConfig, open_store  # noqa: E402
from services.gateway.queue_writer import MAX_PLACEHOLDER_BATCH  # noqa: E402
from tests.helpers.definitions import MEDIA_POOLS, stub_definitions  # noqa: E402
from tests.helpers.processes import (  # noqa: E402
    Subscriber,
    media_env,
    placeholder,
    queue_env,
    start_service,
)

BOT = "bench-bot"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(
    jobs: int,
    replicas: int,
    concurrency: int,
    in_flight_rpcs: int,
    paced_jobs: int,
    batched: bool,
) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-media-"))
    db, staging = tmp / "store.sqlite3", tmp / "staging"
    staging.mkdir()
    store = await open_store(StoreConfig(backend="sqlite", sqlite_path=db))
    # Zero-delay stubs: this measures the pipeline's own cost, not an engine's.
    document = stub_definitions(
        {name: {"delay_seconds": 0.0, "text": "stub text"} for name in MEDIA_POOLS},
        concurrency=concurrency,
    )
    await store.put_processor_definitions(document)
    queue = await start_service("services.queue_svc", queue_env(db), tmp / "queue.log")
    traces = [tmp / f"trace-{i}.jsonl" for i in range(replicas)]
    medias = [
        await start_service(
            "services.media_svc",
            media_env(
                db,
                staging,
                queue.address,
                MEDIA_SVC_TRACE_PATH=str(trace),
                MEDIA_LEASE_SECONDS="30",
                MEDIA_POLL_FALLBACK_SECONDS="1",
                LOG_LEVEL="WARNING",
            ),
            tmp / f"media-{i}.log",
        )
        for i, trace in enumerate(traces)
    ]
    channel = grpc.aio.insecure_channel(queue.address)
    stub = queue_service_pb2_grpc.QueueServiceStub(channel)
    subscriber = Subscriber(queue.address, BOT)
    try:
        await stub.StartBot(queue_service_pb2.StartBotRequest(bot_id=BOT), timeout=10)
        await subscriber.start()
        paced: list[queue_service_pb2.InjectPlaceholderRequest] = []
        requests = [placeholder(BOT, f"chat-{i % 100}@s.whatsapp.net") for i in range(jobs)]
        for request in requests:
            (staging / request.media_processing_id).write_bytes(b"bench")
        gate = asyncio.Semaphore(in_flight_rpcs)

        async def inject_batch(
            batch: list[queue_service_pb2.InjectPlaceholderRequest],
        ) -> list[queue_service_pb2.InjectPlaceholdersResult]:
            reply = await stub.InjectPlaceholders(
                queue_service_pb2.InjectPlaceholdersRequest(placeholders=batch), timeout=60
            )
            return list(reply.results)

        # As the gateway sends them: the placeholders of one event-loop turn in one call.
        batcher = CallBatcher(inject_batch, max_batch=MAX_PLACEHOLDER_BATCH)

        async def inject(request: queue_service_pb2.InjectPlaceholderRequest) -> None:
            async with gate:
                if batched:
                    result = await batcher.call(request)
                    if result.code != 0:
                        raise RuntimeError(f"placeholder refused: {result.error}")
                else:
                    await stub.InjectPlaceholder(request, timeout=60)

        pids = {"queue_svc": queue.process.pid}
        pids.update({f"media_svc-{i}": m.process.pid for i, m in enumerate(medias)})
        cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        started = time.perf_counter()
        injecting = asyncio.gather(*(inject(r) for r in requests))
        if not medias:  # --replicas 0: how fast queue_svc alone takes placeholders
            await injecting
            print(f"injected {jobs} placeholders in {time.perf_counter() - started:.2f}s")
            return
        await subscriber.wait_for(jobs, 600)
        elapsed = time.perf_counter() - started
        cpu_us = {
            name: (cpu_seconds(pid) - cpu_before[name]) / jobs * 1e6 for name, pid in pids.items()
        }
        await injecting
        inject_done = time.perf_counter() - started
        # Pickup latency without a backlog: placeholders one at a time, 10 ms apart.
        paced = [placeholder(BOT, "chat-paced@s.whatsapp.net") for _ in range(paced_jobs)]
        for request in paced:
            (staging / request.media_processing_id).write_bytes(b"bench")
            await stub.InjectPlaceholder(request, timeout=60)
            await asyncio.sleep(0.01)
        await subscriber.wait_for(jobs + paced_jobs, 60)
    finally:
        await subscriber.close()
        await channel.close(None)
        for media in medias:
            await media.stop()
        await queue.stop()
        await store.close()
    claims = [json.loads(line) for t in traces for line in t.read_text().splitlines()]
    paced_ids = {r.media_processing_id for r in paced}
    first = [c for c in claims if c["token"] == 1]
    burst = [max(0.0, c["claimed_ms"] - c["created_ms"]) for c in first if c["id"] not in paced_ids]
    pickups = [max(0.0, c["claimed_ms"] - c["created_ms"]) for c in first if c["id"] in paced_ids]
    texts = sum(1 for m in subscriber.messages if m.message.content == "stub text")
    jobs_per_s = jobs / elapsed
    print(f"jobs={jobs} replicas={replicas} pool_concurrency={concurrency}")
    print(f"delivered={len(subscriber.messages)} with_stub_text={texts} claims={len(claims)}")
    print(f"all placeholders injected after {inject_done:.2f}s; all delivered after {elapsed:.2f}s")
    print(
        "CPU per job of the burst, µs: "
        + " ".join(f"{name}={us:.0f}" for name, us in cpu_us.items())
        + f" (placeholders sent {'batched per event-loop turn' if batched else 'one call each'})"
    )
    print(
        f"burst pickup ms (queueing behind the backlog): p50={percentile(burst, 0.5):.1f}"
        f" p99={percentile(burst, 0.99):.1f}"
    )
    print(
        f"paced pickup latency ms ({len(pickups)} jobs, 10 ms apart):"
        f" p50={percentile(pickups, 0.5):.1f} p90={percentile(pickups, 0.9):.1f}"
        f" p99={percentile(pickups, 0.99):.1f} mean={statistics.fmean(pickups):.1f}"
    )
    print(
        f"RESULT jobs_per_s={jobs_per_s:.0f} pickup_p50_ms={percentile(pickups, 0.5):.1f}"
        f" pickup_p99_ms={percentile(pickups, 0.99):.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=64, help="per stub pool")
    parser.add_argument("--in-flight", type=int, default=256, help="placeholders in flight")
    parser.add_argument("--paced", type=int, default=200, help="jobs for the pickup latency")
    parser.add_argument(
        "--unary",
        action="store_true",
        help="one InjectPlaceholder call per placeholder instead of InjectPlaceholders",
    )
    args = parser.parse_args()
    asyncio.run(
        run(
            args.jobs,
            args.replicas,
            args.concurrency,
            args.in_flight,
            args.paced,
            not args.unary,
        )
    )


if __name__ == "__main__":
    main()
