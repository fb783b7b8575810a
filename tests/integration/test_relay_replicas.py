"""Several relay processes share the bots through leases in the store: three relays split
six bots two each; one is SIGKILLed mid-stream and the other two take its bots once its
leases expire; a fourth joins and gets its share back from them. A local receiver
records every POST: every message arrives, in order per bot, and a repeat is only the
message in flight at the kill, right after itself, with the same key and body."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

import aiohttp
import grpc
from aiohttp import web
from chatbot.common.v1 import message_pb2 as m
from chatbot.queue.v1 import queue_service_pb2 as q
from chatbot.queue.v1 import queue_service_pb2_grpc as q_grpc

from services.common.store import BotConfig, StoreConfig, open_store
from services.relay.signing import IDEMPOTENCY_HEADER
from tests.helpers.processes import Service, queue_env, start_service
from tests.helpers.waiting import eventually

SECRET = "replica-webhook-secret-0123456789"
CHAT = "4915100000001@s.whatsapp.net"
BOTS = tuple(f"bot-r{n}" for n in range(6))
CONSUMER = "webhook-relay"
LEASE_SECONDS = 3.0
BATCHES = 90


@dataclass
class Receiver:
    """Every POST, per bot in arrival order: (sequence, idempotency key, body)."""

    posts: dict[str, list[tuple[int, str, bytes]]] = field(
        default_factory=lambda: defaultdict(list)
    )

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        key = request.headers[IDEMPOTENCY_HEADER]
        bot, sequence = key.rsplit(":", 1)
        self.posts[bot].append((int(sequence), key, body))
        # A little work per message, so a kill lands while POSTs are in flight.
        await asyncio.sleep(0.005)
        return web.json_response({"ok": True})

    def delivered(self, bot: str) -> set[int]:
        return {sequence for sequence, _, _ in self.posts[bot]}


def relay_env(db: Path, queue: str, instance: str) -> dict[str, str]:
    return {
        "STORE_BACKEND": "sqlite",
        "SQLITE_PATH": str(db),
        "QUEUE_SVC_ADDRESS": queue,
        "RELAY_HOST": "127.0.0.1",
        "RELAY_PORT": "0",
        "RELAY_GATEWAY_URL": "http://127.0.0.1:9",
        "RELAY_INSTANCE_ID": instance,
        "RELAY_LEASE_SECONDS": str(LEASE_SECONDS),
        "RELAY_TIMEOUT_SECONDS": "5",
        "RELAY_BACKOFF_BASE_SECONDS": "0.02",
        "RELAY_BACKOFF_MAX_SECONDS": "0.2",
        "RELAY_MAX_ATTEMPTS": "1000",
        "RELAY_CONFIG_REFRESH_SECONDS": "0.5",
        "RELAY_BOT_BUFFER": "8",
        "OUTBOUND_ALLOW_HOSTS": "127.0.0.1",
    }


def text(bot: str, n: int) -> q.AddMessageRequest:
    message = q.NewMessage(
        content=f"{bot} #{n}",
        sender=CHAT,
        source=m.MESSAGE_SOURCE_USER,
        provider_message_id=f"WA-{bot}-{n}",
    )
    message.originating_time.GetCurrentTime()
    return q.AddMessageRequest(bot_id=bot, correspondent_id=CHAT, message=message)


async def owned(http: aiohttp.ClientSession, relay: Service) -> list[str]:
    async with http.get(f"http://{relay.address}/healthz") as response:
        bots: list[str] = (await response.json())["bots"]
        return bots


async def shares(http: aiohttp.ClientSession, relays: list[Service]) -> list[list[str]]:
    return [await owned(http, relay) for relay in relays]


async def test_relays_share_bots_and_take_over_a_killed_one(tmp_path: Path) -> None:
    db = tmp_path / "store.sqlite3"
    store = await open_store(StoreConfig(backend="sqlite", sqlite_path=db))
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/hook/{bot}", receiver.handle)
    runner = web.AppRunner(app, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    for bot in BOTS:
        await store.put_bot_config(
            BotConfig(
                bot_id=bot,
                webhook_url=f"http://127.0.0.1:{port}/hook/{bot}",
                webhook_secret=SECRET,
                webhook_since_sequence=0,
            )
        )
    queue = await start_service("services.queue_svc", queue_env(db), tmp_path / "queue.log")
    relays: list[Service] = []
    killed: list[str] = []
    try:
        for n in range(3):
            relays.append(
                await start_service(
                    "services.relay",
                    relay_env(db, queue.address, f"relay-{n}"),
                    tmp_path / f"relay-{n}.log",
                )
            )
        async with (
            aiohttp.ClientSession() as http,
            grpc.aio.insecure_channel(queue.address) as channel,
        ):
            stub = q_grpc.QueueServiceStub(channel)
            for bot in BOTS:
                await stub.StartBot(q.StartBotRequest(bot_id=bot))

            async def send(first: int, last: int) -> None:
                for n in range(first, last):
                    batch = [text(bot, n) for bot in BOTS]
                    await stub.AddMessages(q.AddMessagesRequest(messages=batch))
                    # Paced, so the kill and the join land in a running stream.
                    await asyncio.sleep(0.02)

            async def balanced(relays: list[Service], each: int) -> list[list[str]]:
                split = await shares(http, relays)
                ok = sorted(b for bots in split for b in bots) == sorted(BOTS) and all(
                    len(bots) == each for bots in split
                )
                return split if ok else []

            await send(0, 10)
            # Three relays, six bots: two each (ceil(6/3)), every bot delivered by one.
            await eventually(lambda: balanced(relays, 2), within=20)
            await send(10, 40)
            victim = relays.pop(0)
            killed = await owned(http, victim)
            await victim.kill()
            await send(40, 70)
            # The survivors take the killed relay's bots: three each.
            await eventually(lambda: balanced(relays, 3), within=20)
            relays.append(
                await start_service(
                    "services.relay",
                    relay_env(db, queue.address, "relay-3"),
                    tmp_path / "relay-3.log",
                )
            )
            await send(70, BATCHES)
            # The newcomer gets its share from the others, who hand idle bots over.
            await eventually(lambda: balanced(relays, 2), within=20)
            top = {bot: await store.max_sequence(bot) for bot in BOTS}
            assert all(top[bot] == BATCHES for bot in BOTS), top

            async def all_delivered() -> bool:
                return all(receiver.delivered(b) >= set(range(1, top[b] + 1)) for b in BOTS)

            await eventually(all_delivered, within=30)

            async def cursors_done() -> bool:
                cursors = await store.delivery_cursors(CONSUMER)
                return all(cursors.get(b) == top[b] for b in BOTS)

            await eventually(cursors_done, within=10)
            metrics = []
            for relay in relays:
                async with http.get(f"http://{relay.address}/metrics") as response:
                    metrics.append(await response.text())
    finally:
        for relay in relays:
            await relay.stop()
        await queue.stop()
        await runner.cleanup()
        await store.close()

    assert len(killed) == 2
    repeats: dict[str, int] = {}
    for bot in BOTS:
        posts = receiver.posts[bot]
        sequences = [sequence for sequence, _, _ in posts]
        # In order, nothing skipped; a repeat is the message just posted, posted again.
        steps = {after - before for before, after in pairwise(sequences)}
        assert sequences[0] == 1 and steps <= {0, 1}, (bot, sequences)
        for (_, key, body), (_, again_key, again_body) in pairwise(posts):
            if key == again_key:
                assert body == again_body, key
        assert all(json.loads(body)["bot_id"] == bot for _, _, body in posts)
        repeats[bot] = len(sequences) - len(set(sequences))
    # The killed relay's in-flight POSTs are the only possible repeats: one per bot it held
    # (a bot handed over by a live relay is handed over idle).
    assert all(repeats[bot] <= (1 if bot in killed else 0) for bot in BOTS), repeats
    for text_ in metrics:
        assert "relay_bots_owned 2.0" in text_, text_
    print(f"killed relay held {killed}; repeats {repeats}")
