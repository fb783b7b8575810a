"""Memory of queue_svc's per-bot dedup of WhatsApp provider ids, per 100,000 ids.

In one process, two identical runs of one `BotQueues` (the queue_svc domain object):
`--messages` (default 100,000) text messages over 500 correspondents, each batch popped
and marked durable the way ingestion does after its group commit. The first run gives
every message a WhatsApp provider id, the baseline run gives none (nothing to
remember). tracemalloc measures what stays allocated after each run; the difference,
scaled to 100,000 ids, is what the dedup memory costs. Windows are limited to one
message per correspondent in both runs so they cancel out.
Last line: `RESULT dedup_mb_per_100k=<x> dedup_bytes_per_id=<x> baseline_mb=<x>`.

    .venv/bin/python bench/dedup_memory.py [--messages 100000]
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench.harness import load_average  # noqa: E402
from services.queue_svc.bot_queues import BotQueues  # noqa: E402
from services.queue_svc.messages import NewMessage, QueueLimits  # noqa: E402

CHATS = 500
BATCH = 500


def fill(messages: int, with_ids: bool) -> tuple[BotQueues, int]:
    """(the bot, bytes still allocated by tracemalloc after the run)."""
    gc.collect()
    tracemalloc.start()
    start = tracemalloc.get_traced_memory()[0]
    bot = BotQueues("bench", "whatsapp_baileys", QueueLimits(max_messages=1))
    now = datetime.now(UTC)
    for n in range(messages):
        chat = f"4917{n % CHATS:08d}@s.whatsapp.net"
        bot.add(
            chat,
            NewMessage(
                content="m" * 20,
                sender=chat,
                source="user",
                originating_time=now,
                # WhatsApp ids are 20-32 upper-case hex characters; 3EB0… is Baileys' form.
                provider_message_id=f"3EB0{n:016X}" if with_ids else "",
            ),
        )
        if bot.backlog_size >= BATCH:
            bot.mark_durable(bot.pop_ready(BATCH))
    bot.mark_durable(bot.pop_ready(bot.backlog_size))
    gc.collect()
    used = tracemalloc.get_traced_memory()[0] - start
    tracemalloc.stop()
    return bot, used


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    args = parser.parse_args()
    print(f"load average before: {load_average()}")
    started = time.perf_counter()
    baseline_bot, baseline = fill(args.messages, with_ids=False)
    del baseline_bot
    bot, with_ids = fill(args.messages, with_ids=True)
    per_id = (with_ids - baseline) / args.messages
    per_100k_mb = per_id * 100_000 / 1e6
    known = sum(bot.lookup_provider_id(f"3EB0{n:016X}")[0] for n in range(args.messages))
    print(
        f"{args.messages} messages in {time.perf_counter() - started:.1f} s;"
        f" baseline (no provider ids) {baseline / 1e6:.1f} MB, with ids {with_ids / 1e6:.1f} MB;"
        f" ids still in memory {known} (the rest are answered by the store)"
    )
    print(f"load average after: {load_average()}")
    print(
        f"RESULT dedup_mb_per_100k={per_100k_mb:.2f} dedup_bytes_per_id={per_id:.1f}"
        f" baseline_mb={baseline / 1e6:.1f}"
    )


if __name__ == "__main__":
    main()
