"""StartBot with a long history on SQLite: how long a bot takes to come back with every
window refilled from `queues` (one `recent_messages` query for the bot).

Fills `queues` with --correspondents x --messages rows (plus --older rows per
correspondent that the window limit leaves out), then times StartBot in a fresh
QueueService, and the store query alone. Ends with
`RESULT start_bot_s=<x> recent_messages_s=<x> restored=<n> rows=<n>`.

    .venv/bin/python bench/queue_start.py [--correspondents 1000] [--messages 50]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

from services.common.store import (  # noqa: E402
    BotConfig,
    Store,
    StoreConfig,
    StoredMessage,
    open_store,
)
from services.queue_svc.service import QueueService, ServiceSettings  # noqa: E402

BOT = "bench-bot"
PROVIDER = "whatsapp_baileys"


async def _fill(store: Store, correspondents: int, per_correspondent: int) -> int:
    now = datetime.now(UTC)
    rows = 0
    batch: list[StoredMessage] = []
    for c in range(correspondents):
        corr = f"49151{c:08d}@s.whatsapp.net"
        for i in range(1, per_correspondent + 1):
            content = f"message {i} of a conversation with {corr}"
            batch.append(
                StoredMessage(
                    bot_id=BOT,
                    provider_name=PROVIDER,
                    correspondent_id=corr,
                    id=i,
                    content=content,
                    sender=corr,
                    source="user",
                    originating_time=now - timedelta(seconds=per_correspondent - i),
                    provider_message_id=f"WA-{c}-{i}",
                    message_size=len(content),
                )
            )
            if len(batch) >= 5_000:
                rows += await store.insert_messages(batch)
                batch = []
    rows += await store.insert_messages(batch)
    return rows


async def _run(correspondents: int, messages: int, older: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        config = StoreConfig(backend="sqlite", sqlite_path=Path(tmp) / "bench.sqlite3")
        store = await open_store(config)
        try:
            await store.put_bot_config(BotConfig(BOT, max_messages=messages))
            rows = await _fill(store, correspondents, messages + older)
            started = time.perf_counter()
            recent = await store.recent_messages(BOT, PROVIDER, messages)
            query_s = time.perf_counter() - started
            assert sum(len(v) for v in recent.values()) == correspondents * messages

            service = QueueService(store, ServiceSettings(resume_bots=False))
            await service.start()
            started = time.perf_counter()
            result = await service.start_bot(BOT)
            start_s = time.perf_counter() - started
            await service.shutdown()
        finally:
            await store.close()
    print(
        f"{correspondents} correspondents x {messages} messages in the window"
        f" (+{older} older each, {rows} rows): StartBot {start_s:.3f} s,"
        f" recent_messages alone {query_s:.3f} s, {result.history_restored} restored"
    )
    print(
        f"RESULT start_bot_s={start_s:.3f} recent_messages_s={query_s:.3f}"
        f" restored={result.history_restored} rows={rows}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--correspondents", type=int, default=1_000)
    parser.add_argument("--messages", type=int, default=50, help="window limit (max_messages)")
    parser.add_argument("--older", type=int, default=0, help="rows per chat beyond the window")
    args = parser.parse_args()
    asyncio.run(_run(args.correspondents, args.messages, args.older))


if __name__ == "__main__":
    main()
