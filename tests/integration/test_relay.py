"""The webhook relay as a real process between real queue_svc and gateway processes and
a local receiver that fails a share of the time (HTTP 500, timeouts, dropped
connections); the relay is SIGKILLed and restarted during the traffic."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import grpc
from aiohttp import web
from chatbot.common.v1 import message_pb2 as m
from chatbot.queue.v1 import queue_service_pb2 as q
from chatbot.queue.v1 import queue_service_pb2_grpc as q_grpc
from chatbot.wire.v1 import frames_pb2 as w

from services.common.store import Store, StoreConfig, open_store
from services.common.wire import encode_frame, parse_gateway_frame
from services.relay.signing import (
    ATTEMPT_HEADER,
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    verify,
)
from tests.helpers.node_api import fake_node_api
from tests.helpers.processes import Service, gateway_env, queue_env, start_service

NODE_TOKEN, API_TOKEN, NODE_API_TOKEN = "node-secret", "api-secret", "node-api-secret"
HOOKED = ("bot-h1", "bot-h2")
PLAIN = "bot-plain"  # no webhook: nothing of it may be delivered
SECRETS = {bot: f"{bot}-webhook-secret-0123456789" for bot in HOOKED}
CHATS = ("4915100000001@s.whatsapp.net", "4915100000002@s.whatsapp.net")
MESSAGES_PER_BOT = 120
RELAY_TIMEOUT = 0.4


@dataclass
class Receiver:
    """The bot builders' endpoint: every attempt is recorded; it fails on purpose."""

    rng: random.Random
    attempts: list[tuple[str, int]] = field(default_factory=list)
    bodies: dict[str, set[bytes]] = field(default_factory=lambda: defaultdict(set))
    accepted: Counter[str] = field(default_factory=Counter)
    bad_signatures: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    url: str = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        bot = request.match_info["bot"]
        body = await request.read()
        key = request.headers[IDEMPOTENCY_HEADER]
        self.attempts.append((key, int(request.headers[ATTEMPT_HEADER])))
        if not verify(
            SECRETS[bot],
            request.headers[TIMESTAMP_HEADER],
            body,
            request.headers[SIGNATURE_HEADER],
            time.time(),
        ):
            self.bad_signatures += 1
            return web.Response(status=401)
        self.bodies[key].add(body)
        roll = self.rng.random()
        if roll < 0.15:
            self.failures["http_500"] += 1
            return web.Response(status=500, text="try later")
        if roll < 0.22:
            self.failures["timeout"] += 1
            await asyncio.sleep(RELAY_TIMEOUT * 2)
            return web.Response(status=200)
        if roll < 0.29:
            self.failures["dropped"] += 1
            assert request.transport is not None
            request.transport.close()
            return web.Response(status=200)
        self.accepted[key] += 1
        content = json.loads(body)["message"]["content"]
        if content.endswith("?"):
            return web.json_response({"reply": {"text": f"re: {content}"}})
        return web.json_response({"ok": True})


@dataclass
class FakeNode:
    """Node on the gateway's WebSocket: acknowledges every outgoing reply and reports it
    sent, as the Node server does."""

    replies: list[tuple[str, str, str]] = field(default_factory=list)
    keys: Counter[str] = field(default_factory=Counter)

    async def run(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for frame in ws:
            parsed = parse_gateway_frame(frame.data)
            if parsed.WhichOneof("payload") != "outgoing_message":
                continue
            out = parsed.outgoing_message
            self.replies.append((out.bot_id, out.correspondent_id, out.text))
            self.keys[f"{out.bot_id}/{out.idempotency_key}"] += 1
            ack = w.NodeFrame(
                frame_id=f"n-{len(self.replies)}",
                ack=w.Ack(frame_id=parsed.frame_id, status=w.ACK_STATUS_ACCEPTED),
            )
            await ws.send_str(encode_frame(ack))
            result = w.NodeFrame(
                frame_id=f"r-{len(self.replies)}",
                outgoing_result=w.OutgoingResult(
                    bot_id=out.bot_id,
                    idempotency_key=out.idempotency_key,
                    status=w.OUTGOING_STATUS_SENT,
                    provider_message_id=out.provider_message_id,
                ),
            )
            await ws.send_str(encode_frame(result))


async def serve_receiver(receiver: Receiver) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/hook/{bot}", receiver.handle)
    runner = web.AppRunner(app, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


def relay_env(db: Path, queue: str, gateway: str) -> dict[str, str]:
    return {
        "STORE_BACKEND": "sqlite",
        "SQLITE_PATH": str(db),
        "QUEUE_SVC_ADDRESS": queue,
        "RELAY_HOST": "127.0.0.1",
        "RELAY_PORT": "0",
        "RELAY_GATEWAY_URL": f"http://{gateway}",
        "RELAY_GATEWAY_API_TOKEN": API_TOKEN,
        "RELAY_TIMEOUT_SECONDS": str(RELAY_TIMEOUT),
        "RELAY_BACKOFF_BASE_SECONDS": "0.02",
        "RELAY_BACKOFF_MAX_SECONDS": "0.3",
        "RELAY_CONFIG_REFRESH_SECONDS": "1",
        # A restarted relay is a new replica: it takes the bots once the killed one's
        # leases expire.
        "RELAY_LEASE_SECONDS": "1.5",
        # Small, so the catch-up from the store (a receiver slower than the stream) runs.
        "RELAY_BOT_BUFFER": "8",
        # The failures here are all transient and random: a message must never run out
        # of attempts (the give-up policy has its own test, test_relay_policy.py).
        "RELAY_MAX_ATTEMPTS": "1000",
        # The receiver listens on loopback, which the SSRF guard refuses by default.
        "OUTBOUND_ALLOW_HOSTS": "127.0.0.1",
    }


def text(bot: str, chat: str, n: int) -> q.AddMessageRequest:
    content = f"{bot} {chat} #{n}" + ("?" if n % 10 == 0 else "")
    message = q.NewMessage(
        content=content, sender=chat, source=m.MESSAGE_SOURCE_USER, provider_message_id=f"WA-{n}"
    )
    message.originating_time.GetCurrentTime()
    return q.AddMessageRequest(bot_id=bot, correspondent_id=chat, message=message)


async def _all_keys(store: Store, bot: str) -> dict[str, str]:
    keys: dict[str, str] = {}
    after = 0
    while page := await store.messages_after(bot, after, 1000):
        for msg in page:
            keys[f"{bot}:{msg.sequence}"] = msg.content
        after = page[-1].sequence or after
    return keys


async def test_relay_delivers_every_message_at_least_once_across_kills(tmp_path: Path) -> None:
    # Seeded: the receiver's failures and the kill timing are the same on every run.
    rng = random.Random(23)
    db = tmp_path / "store.sqlite3"
    receiver = Receiver(rng)
    node = FakeNode()
    calls: list[dict[str, Any]] = []
    node_runner, node_url = await fake_node_api(calls, NODE_API_TOKEN)
    receiving = serve_receiver(receiver)
    hook_url = await anext(receiving)
    queue = await start_service("services.queue_svc", queue_env(db), tmp_path / "queue.log")
    gateway = await start_service(
        "services.gateway",
        {
            **gateway_env(
                db,
                queue.address,
                node_url,
                node_ws_token=NODE_TOKEN,
                api_token=API_TOKEN,
                node_api_token=NODE_API_TOKEN,
            ),
            "OUTBOUND_ALLOW_HOSTS": "127.0.0.1",
        },
        tmp_path / "gateway.log",
    )
    relay_log = tmp_path / "relay.log"
    relay: Service | None = None
    store = await open_store(StoreConfig(backend="sqlite", sqlite_path=db))
    kills = 0
    try:
        async with aiohttp.ClientSession() as http:
            auth = {"Authorization": f"Bearer {API_TOKEN}"}
            async with grpc.aio.insecure_channel(queue.address) as channel:
                stub = q_grpc.QueueServiceStub(channel)
                # Three messages per bot before any webhook exists: never delivered.
                for bot in (*HOOKED, PLAIN):
                    await stub.StartBot(q.StartBotRequest(bot_id=bot))
                    for n in range(3):
                        await stub.AddMessage(text(bot, CHATS[0], 1000 + n))
                for bot in (*HOOKED, PLAIN):
                    hook = (
                        {"webhook_url": f"{hook_url}/hook/{bot}", "webhook_secret": SECRETS[bot]}
                        if bot in HOOKED
                        else {}
                    )
                    async with http.put(
                        f"http://{gateway.address}/bots/{bot}/config", json=hook, headers=auth
                    ) as response:
                        assert response.status == 200, await response.text()
                        shown = (await response.json())["config"]
                    if bot in HOOKED:
                        assert shown["webhook_secret"] == "(set)"
                        assert shown["webhook_since_sequence"] == 3
                ws = await http.ws_connect(
                    f"http://{gateway.address}/ws",
                    headers={"Authorization": f"Bearer {NODE_TOKEN}"},
                )
                node_task = asyncio.create_task(node.run(ws))
                # A first batch before the relay ever ran: delivered from the point where
                # the webhook was configured.
                sent = 0

                async def send(count: int) -> None:
                    nonlocal sent
                    for _ in range(count):
                        sent += 1
                        batch = [text(bot, CHATS[sent % 2], sent) for bot in (*HOOKED, PLAIN)]
                        await stub.AddMessages(q.AddMessagesRequest(messages=batch))

                await send(10)
                relay = await start_service(
                    "services.relay", relay_env(db, queue.address, gateway.address), relay_log
                )
                for _ in range(3):
                    await send((MESSAGES_PER_BOT - 10) // 4)
                    await asyncio.sleep(rng.uniform(0.2, 0.8))
                    await relay.kill()
                    kills += 1
                    await send(3)
                    relay = await start_service(
                        "services.relay", relay_env(db, queue.address, gateway.address), relay_log
                    )
                await send(MESSAGES_PER_BOT - sent)
                expected = {
                    bot: {
                        key: content
                        for key, content in (await _all_keys(store, bot)).items()
                        if int(key.rsplit(":", 1)[1]) > 3
                    }
                    for bot in HOOKED
                }
                wanted = {key for keys in expected.values() for key in keys}

                async with asyncio.timeout(45):
                    while not wanted <= set(receiver.accepted):  # noqa: ASYNC110
                        await asyncio.sleep(0.1)
                    replies_wanted = {
                        (bot, content)
                        for bot in HOOKED
                        for content in expected[bot].values()
                        if content.endswith("?")
                    }
                    while not replies_wanted <= {(b, t[4:]) for b, _, t in node.replies}:  # noqa: ASYNC110
                        await asyncio.sleep(0.1)
                async with http.get(f"http://{relay.address}/metrics") as response:
                    metrics = await response.text()
                node_task.cancel()
                await ws.close()
    finally:
        if relay is not None:
            await relay.kill()
        await gateway.stop()
        await queue.stop()
        await store.close()
        await anext(receiving, None)
        await node_runner.cleanup()

    assert receiver.bad_signatures == 0
    # After dedup by the idempotency key: every message exactly once, none missing,
    # nothing of the bot without a webhook.
    assert set(receiver.accepted) == wanted
    assert all(len(bodies) == 1 for bodies in receiver.bodies.values()), "a key changed body"
    assert not any(key.startswith(f"{PLAIN}:") for key, _ in receiver.attempts)
    early = {f"{bot}:{n}" for bot in HOOKED for n in (1, 2, 3)}
    assert not early & {key for key, _ in receiver.attempts}, "a message from before the webhook"
    keys_per_attempt = Counter(key for key, _ in receiver.attempts)
    redeliveries = sum(receiver.accepted.values()) - len(receiver.accepted)
    retries = sum(keys_per_attempt.values()) - len(keys_per_attempt)
    # Replies reached Node, on the right chat.
    for bot in HOOKED:
        for key, content in expected[bot].items():
            if content.endswith("?"):
                assert any(
                    b == bot and t == f"re: {content}" and content.split()[1] == chat
                    for b, chat, t in node.replies
                ), key
    # A redelivered message's reply has the same key: streamed to Node once, never twice.
    assert node.keys and max(node.keys.values()) == 1, node.keys.most_common(3)
    assert all(key.split("/", 1)[1].startswith("reply:") for key in node.keys)
    assert 'relay_deliveries_total{outcome="delivered",status_class="2xx"}' in metrics
    assert "relay_dead_letters_total{" not in metrics
    print(
        f"messages={len(wanted)} attempts={len(receiver.attempts)} retries={retries}"
        f" failures={dict(receiver.failures)} redeliveries_after_2xx={redeliveries}"
        f" relay_kills={kills} replies_at_node={len(node.replies)}"
    )
