"""Soak: realistic mixed traffic (text, every structured kind, every media kind through
zero-delay stub pools) through gateway → queue_svc → media_svc, with the webhook relay
delivering every bot's messages to a local receiver, for `--seconds` at `--rate` frames/s.

Counts, as a consumer that keeps its cursors sees them, every accepted frame delivered
once, lost (accepted, never delivered) and duplicated (delivered more than once), and
samples each service's resident memory every 2 s: growth from the end of the warm-up
(the first 20 %, at least 10 s) to the mean of the last fifth of the samples.
Last line: `RESULT soak_seconds=<n> sent=<n> lost=<n> duplicated=<n>
relay_missing=<n> max_rss_growth_pct=<x>`.

The defaults are the issue's soak: 10 minutes at 500 frames/s over 3 bots, at least
100,000 frames per bot, long enough for every bounded memory to fill and for a leak to
show past the filling. `--seconds 60` is the short run for trying a change.

`--trace-memory` runs queue_svc under tracemalloc (MEMORY_TRACE_PATH) and prints the
allocation sites that grew most after the warm-up: where a leak would be.

    .venv/bin/python bench/soak.py [--seconds 600] [--rate 500] [--trace-memory]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

# Replace the script's own directory on the path: bench/queue.py would shadow the stdlib.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench.harness import (  # noqa: E402
    MemorySampler,
    MixedTraffic,
    Outbox,
    Stack,
    Tally,
    TimedConsumer,
    WebhookReceiver,
    configure_bots,
    load_average,
    start_bots,
    tally,
)
from tests.helpers.processes import free_port  # noqa: E402
from tests.helpers.waiting import wait_until  # noqa: E402

BOTS = [f"bench-soak-{i}" for i in range(3)]
MEMORY_TRACE = "queue_svc-memory.jsonl"


@dataclass
class SoakReport:
    seconds: float
    tally: Tally
    kinds: Counter[str]
    growth: dict[str, tuple[float, float, float]]
    relay_missing: int
    relay_redelivered: int
    sent_per_bot: int

    @property
    def max_growth(self) -> float:
        return max((g for _, _, g in self.growth.values()), default=0.0)


async def soak(
    seconds: float, rate: int, root: Path | None = None, trace_memory: bool = False
) -> SoakReport:
    root = root or Path(tempfile.mkdtemp(prefix="bench-soak-"))
    stack = Stack(root, free_port())
    if trace_memory:
        # Snapshots from the end of the warm-up on (services/common/memory_trace.py).
        stack.extra_env["queue_svc"] = {
            "MEMORY_TRACE_PATH": str(root / MEMORY_TRACE),
            "MEMORY_TRACE_SECONDS": str(max(10.0, seconds * 0.2)),
        }
    receiver = WebhookReceiver()
    await receiver.start()
    await configure_bots(stack, BOTS, receiver.url)
    for name in ("queue_svc", "media_svc", "gateway", "relay"):
        await stack.start(name)
    await start_bots(stack.queue_address, BOTS)
    consumer = TimedConsumer(stack.queue_address, BOTS)
    consumer.start()
    outbox = Outbox(stack.ws_url, window=1024)
    await outbox.start()
    traffic = MixedTraffic("soak", BOTS, 40, stack.staging)
    memory = MemorySampler(stack)
    memory.start()
    try:
        started = time.perf_counter()
        tick, per_tick = 0.05, max(1, rate // 20)
        step = 0
        while (due := started + step * tick) - started < seconds:
            step += 1
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            for _ in range(per_tick):
                frame_id, _, text = traffic.next()
                await outbox.send(frame_id, text)
        await outbox.drain(60)
        accepted = {f[2:] for f in outbox.accepted_at}
        await consumer.wait_for(accepted, 60)
        # Every delivered message has a sequence the relay must post once at least.
        expected_keys = {f"{m.bot_id}:{m.sequence}" for m in consumer.messages}
        with contextlib.suppress(TimeoutError):
            await wait_until(lambda: expected_keys <= receiver.keys.keys(), 60, 0.2)
    finally:
        await memory.close()
        await outbox.close()
        await consumer.close()
        await stack.stop_all()
        await receiver.close()
    return SoakReport(
        seconds=seconds,
        tally=tally(outbox, consumer),
        kinds=Counter(
            "text" if k == "text" else "media" if k.startswith("MEDIA") else "structured"
            for k in traffic.kinds.values()
        ),
        growth=memory.growth(max(10.0, seconds * 0.2)),
        relay_missing=len(expected_keys - receiver.keys.keys()),
        relay_redelivered=sum(n - 1 for n in receiver.keys.values()),
        sent_per_bot=len(traffic.kinds) // len(BOTS),
    )


def print_report(report: SoakReport) -> None:
    print(f"frames by kind: {dict(report.kinds)}; per bot: {report.sent_per_bot}")
    print(report.tally.line())
    print(
        f"relay: webhook keys missing={report.relay_missing} redelivered={report.relay_redelivered}"
    )
    for name, (start, end, growth) in sorted(report.growth.items()):
        print(
            f"rss {name}: {start:.1f} MB after warm-up -> {end:.1f} MB at the end ({growth:+.1f}%)"
        )


def print_memory_trace(path: Path, top: int = 10) -> None:
    """The last report of queue_svc's allocation growth since the warm-up."""
    lines = path.read_text().splitlines() if path.exists() else []
    if not lines:
        print("queue_svc memory trace: no report (the run was shorter than two intervals)")
        return
    last = json.loads(lines[-1])
    print(f"queue_svc allocations grown since the warm-up (traced {last['traced_mb']} MB):")
    for stat in last["top"][:top]:
        where = " <- ".join(stat["where"][-1:-4:-1])
        print(f"  {stat['kb']:9.1f} kB {stat['blocks']:7d} blocks  {where}")


async def run(seconds: float, rate: int, trace_memory: bool) -> None:
    print(f"load average before: {load_average()}")
    root = Path(tempfile.mkdtemp(prefix="bench-soak-"))
    report = await soak(seconds, rate, root, trace_memory)
    print_report(report)
    if trace_memory:
        print_memory_trace(root / MEMORY_TRACE)
    print(f"load average after: {load_average()}")
    print(
        f"RESULT soak_seconds={seconds:.0f} sent={report.tally.sent} lost={report.tally.lost}"
        f" duplicated={report.tally.duplicated} relay_missing={report.relay_missing}"
        f" max_rss_growth_pct={report.max_growth:.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--rate", type=int, default=500, help="frames/s offered, all bots")
    parser.add_argument(
        "--trace-memory",
        action="store_true",
        help="tracemalloc in queue_svc: print what grew after the warm-up (slows it down)",
    )
    args = parser.parse_args()
    asyncio.run(run(args.seconds, args.rate, args.trace_memory))


if __name__ == "__main__":
    main()
