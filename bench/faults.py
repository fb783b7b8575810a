"""Fault injection: mixed traffic (text, structured kinds, media through zero-delay stub
pools) through gateway → queue_svc → media_svc, the webhook relay posting every message
to a local receiver, while a random service (gateway, queue_svc, media_svc, relay) is
SIGKILLed every 1.5-3.5 s and restarted 0.2-1 s later.

Node's side is a sender with Node's outbox semantics (bench/harness.py `Outbox`: every
frame kept until ACCEPTED/DUPLICATE/REJECTED, RETRY and unanswered frames resent, all
of them after a reconnect), not the Node server itself: killing and restarting the
real Node server needs a WhatsApp session (or its demo script) per restart.
Counts: frames sent, accepted frames delivered exactly once (as the consumer that keeps
its cursors sees them), delivered as failure markers, lost, duplicated; the relay's
missing and redelivered webhook keys (the relay is at-least-once by design).
Last line: `RESULT kills=<n> sent=<n> delivered_once=<n> failure_markers=<n> lost=<n>
duplicated=<n> relay_missing=<n>`.

    .venv/bin/python bench/faults.py [--seconds 60] [--rate 200]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

# Replace the script's own directory on the path: bench/queue.py would shadow the stdlib.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench.harness import (  # noqa: E402
    MixedTraffic,
    Outbox,
    Stack,
    TimedConsumer,
    WebhookReceiver,
    configure_bots,
    load_average,
    start_bots,
    tally,
)
from tests.helpers.processes import free_port  # noqa: E402
from tests.helpers.waiting import wait_until  # noqa: E402

BOTS = [f"bench-faults-{i}" for i in range(3)]
VICTIMS = ("gateway", "queue_svc", "media_svc", "relay")


async def send(outbox: Outbox, traffic: MixedTraffic, seconds: float, rate: int) -> None:
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


async def run(seconds: float, rate: int) -> None:
    print(f"load average before: {load_average()}")
    # Seeded and printed: BENCH_FAULTS_SEED=<seed> replays the same kill choices.
    seed = int(os.environ.get("BENCH_FAULTS_SEED") or random.SystemRandom().randrange(2**32))
    print(f"seed: {seed} (BENCH_FAULTS_SEED={seed} replays it)")
    rng = random.Random(seed)
    stack = Stack(Path(tempfile.mkdtemp(prefix="bench-faults-")), free_port())
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
    traffic = MixedTraffic("faults", BOTS, 40, stack.staging)
    kills: Counter[str] = Counter()
    order: list[str] = []
    try:
        sending = asyncio.create_task(send(outbox, traffic, seconds, rate))
        while not sending.done():
            await asyncio.wait([sending], timeout=rng.uniform(1.5, 3.5))
            if sending.done():
                break
            # Every service in turn, in a fresh random order each round, so a short
            # run still kills each of them.
            if not order:
                order = rng.sample(VICTIMS, len(VICTIMS))
            victim = order.pop()
            await stack.services.pop(victim).kill()
            kills[victim] += 1
            await asyncio.sleep(rng.uniform(0.2, 1.0))
            await stack.start(victim)
        await sending
        await outbox.drain(120)
        accepted = {f[2:] for f in outbox.accepted_at}
        await consumer.wait_for(accepted, 120)
        expected_keys = {f"{m.bot_id}:{m.sequence}" for m in consumer.messages}
        with contextlib.suppress(TimeoutError):
            await wait_until(lambda: expected_keys <= receiver.keys.keys(), 60, 0.2)
    finally:
        await outbox.close()
        await consumer.close()
        await stack.stop_all()
        await receiver.close()
    result = tally(outbox, consumer)
    relay_missing = len(expected_keys - receiver.keys.keys())
    resent = sum(o.attempts - 1 for o in outbox.outcomes.values())
    print(f"kills: {dict(kills)} ({sum(kills.values())} in {seconds:.0f} s)")
    print(result.line())
    print(
        f"frames resent by the outbox: {resent}; outbox reconnects: {outbox.reconnects};"
        f" subscribe reconnects: {consumer.reconnects}"
    )
    print(
        f"relay: webhook keys missing={relay_missing}"
        f" redelivered={sum(n - 1 for n in receiver.keys.values())}"
    )
    print(f"load average after: {load_average()}")
    print(
        f"RESULT kills={sum(kills.values())} sent={result.sent}"
        f" delivered_once={result.delivered_once} failure_markers={result.failure_markers}"
        f" lost={result.lost} duplicated={result.duplicated} relay_missing={relay_missing}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60, help="of traffic under kills")
    parser.add_argument("--rate", type=int, default=200, help="frames/s offered")
    args = parser.parse_args()
    asyncio.run(run(args.seconds, args.rate))


if __name__ == "__main__":
    main()
