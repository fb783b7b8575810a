"""The webhook policy with real processes: queue_svc, the relay (and the gateway for the
dead-letter API) on one SQLite store, posting to local receivers.

- A webhook answering 410 to everything dead-letters each message after
  RELAY_PERMANENT_FAILURE_ATTEMPTS while another bot's webhook keeps delivering; the
  operator retries and skips dead letters through the gateway API and the admin CLI.
- A 307 to another port is not followed and not delivered; a webhook on an internal
  address is refused on connect (and when configured through the gateway).
- A 1 GB answer (2xx or 410) leaves the relay's RSS within 50 MB of its start.
- The body carries the typed details, the reply context and the message context.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import grpc
from aiohttp import web
from chatbot.common.v1 import context_pb2 as c
from chatbot.common.v1 import details_pb2 as d
from chatbot.common.v1 import message_pb2 as m
from chatbot.queue.v1 import queue_service_pb2 as q
from chatbot.queue.v1 import queue_service_pb2_grpc as q_grpc
from prometheus_client.parser import text_string_to_metric_families

from services.common.store import BotConfig, Store, StoreConfig, open_store
from services.relay.signing import (
    ATTEMPT_HEADER,
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    verify,
)
from tests.helpers.processes import REPO, Service, gateway_env, queue_env, start_service

API_TOKEN = "policy-api-token-0123456789"
SECRET = "policy-webhook-secret-0123456789"
CHAT = "4915100000001@s.whatsapp.net"
CONSUMER = "webhook-relay"
MiB = 1 << 20

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Receiver:
    """Bot builders' endpoints on one local server: /hook/{bot} answers with the bot's
    status (200 by default); every attempt is recorded after its signature is checked."""

    status: dict[str, int] = field(default_factory=dict)
    attempts: list[tuple[str, int]] = field(default_factory=list)
    bodies: dict[str, bytes] = field(default_factory=dict)
    bad_signatures: int = 0
    extra: dict[str, Handler] = field(default_factory=dict)
    # A reply the bot's answer carries.
    replies: dict[str, str] = field(default_factory=dict)

    def keys(self, bot: str) -> Counter[str]:
        return Counter(key for key, _ in self.attempts if key.startswith(f"{bot}:"))

    async def hook(self, request: web.Request) -> web.StreamResponse:
        bot = request.match_info["bot"]
        body = await request.read()
        if not verify(
            SECRET,
            request.headers[TIMESTAMP_HEADER],
            body,
            request.headers[SIGNATURE_HEADER],
            time.time(),
        ):
            self.bad_signatures += 1
            return web.Response(status=401)
        key = request.headers[IDEMPOTENCY_HEADER]
        self.attempts.append((key, int(request.headers[ATTEMPT_HEADER])))
        self.bodies[key] = body
        if bot in self.extra:
            return await self.extra[bot](request)
        answer = {"reply": {"text": self.replies[bot]}} if bot in self.replies else {"ok": True}
        return web.json_response(answer, status=self.status.get(bot, 200))


@asynccontextmanager
async def serve(routes: dict[str, Handler]) -> AsyncIterator[str]:
    app = web.Application()
    for path, handler in routes.items():
        app.router.add_route("*", path, handler)
    runner = web.AppRunner(app, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@dataclass
class Stack:
    store: Store
    queue: Service
    relay: Service
    stub: q_grpc.QueueServiceAsyncStub
    gateway: Service | None = None


def relay_env(db: Path, queue: str, **overrides: str) -> dict[str, str]:
    return {
        "STORE_BACKEND": "sqlite",
        "SQLITE_PATH": str(db),
        "QUEUE_SVC_ADDRESS": queue,
        "RELAY_HOST": "127.0.0.1",
        "RELAY_PORT": "0",
        "RELAY_GATEWAY_URL": "http://127.0.0.1:9",
        "RELAY_TIMEOUT_SECONDS": "5",
        "RELAY_BACKOFF_BASE_SECONDS": "0.02",
        "RELAY_BACKOFF_MAX_SECONDS": "0.1",
        "RELAY_MAX_ATTEMPTS": "3",
        "RELAY_PERMANENT_FAILURE_ATTEMPTS": "2",
        "RELAY_CONFIG_REFRESH_SECONDS": "0.3",
        "OUTBOUND_ALLOW_HOSTS": "127.0.0.1",
        **overrides,
    }


@asynccontextmanager
async def stack(
    tmp_path: Path, hooks: dict[str, str], *, with_gateway: bool = False
) -> AsyncIterator[Stack]:
    """queue_svc and the relay (and the gateway) on one store; each bot of `hooks` is
    started with its webhook URL configured from sequence 0."""
    db = tmp_path / "store.sqlite3"
    store = await open_store(StoreConfig(backend="sqlite", sqlite_path=db))
    for bot, url in hooks.items():
        await store.put_bot_config(
            BotConfig(bot_id=bot, webhook_url=url, webhook_secret=SECRET, webhook_since_sequence=0)
        )
    queue = await start_service("services.queue_svc", queue_env(db), tmp_path / "queue.log")
    services = [queue]
    try:
        relay = await start_service(
            "services.relay", relay_env(db, queue.address), tmp_path / "relay.log"
        )
        services.append(relay)
        gateway = None
        if with_gateway:
            env = gateway_env(
                db,
                queue.address,
                "http://127.0.0.1:9",
                node_ws_token="node-token-0123456789",
                api_token=API_TOKEN,
                node_api_token="unused",
            )
            env["OUTBOUND_ALLOW_HOSTS"] = "127.0.0.1"
            gateway = await start_service("services.gateway", env, tmp_path / "gateway.log")
            services.append(gateway)
        async with grpc.aio.insecure_channel(queue.address) as channel:
            stub = q_grpc.QueueServiceStub(channel)
            for bot in hooks:
                await stub.StartBot(q.StartBotRequest(bot_id=bot))
            yield Stack(store, queue, relay, stub, gateway)
    finally:
        for service in reversed(services):
            await service.stop()
        await store.close()


def text(bot: str, n: int) -> q.AddMessageRequest:
    message = q.NewMessage(
        content=f"{bot} #{n}",
        sender=CHAT,
        source=m.MESSAGE_SOURCE_USER,
        provider_message_id=f"WA-{n}",
    )
    message.originating_time.GetCurrentTime()
    return q.AddMessageRequest(bot_id=bot, correspondent_id=CHAT, message=message)


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 20) -> None:
    """Polls an async condition (the state lives in other processes and the store)."""
    async with asyncio.timeout(within):
        while not await check():  # noqa: ASYNC110 (nothing announces it)
            await asyncio.sleep(0.05)


async def cursor(store: Store, bot: str) -> int:
    return (await store.delivery_cursors(CONSUMER)).get(bot, 0)


async def scrape(relay: Service) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with aiohttp.ClientSession() as http, http.get(f"http://{relay.address}/metrics") as r:
        body = await r.text()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
    }


def sample(
    metrics: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return metrics.get((name, tuple(sorted(labels.items()))), 0.0)


async def admin(gateway: Service, *args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.media_svc.admin",
        "--gateway",
        f"http://{gateway.address}",
        *args,
        cwd=REPO,
        env={**os.environ, "GATEWAY_API_TOKEN": API_TOKEN},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 30)
    return process.returncode or 0, out.decode()


async def test_a_gone_webhook_dead_letters_while_another_bot_keeps_delivering(
    tmp_path: Path,
) -> None:
    receiver = Receiver(status={"bot-gone": 410})
    count = 6
    async with serve({"/hook/{bot}": receiver.hook}) as base:
        hooks = {bot: f"{base}/hook/{bot}" for bot in ("bot-ok", "bot-gone")}
        async with stack(tmp_path, hooks, with_gateway=True) as s:
            assert s.gateway is not None
            for n in range(1, count + 1):
                for bot in hooks:
                    await s.stub.AddMessage(text(bot, n))

            async def both_handled() -> bool:
                return (await cursor(s.store, "bot-ok"), await cursor(s.store, "bot-gone")) == (
                    count,
                    count,
                )

            await eventually(both_handled)
            # bot-ok: every message once; bot-gone: every message tried twice, then kept.
            assert receiver.keys("bot-ok") == Counter({f"bot-ok:{n}": 1 for n in range(1, 7)})
            assert receiver.keys("bot-gone") == Counter({f"bot-gone:{n}": 2 for n in range(1, 7)})
            letters = await s.store.webhook_dead_letters("bot-gone")
            assert [(x.sequence, x.attempts, x.outcome, x.status) for x in letters] == [
                (n, 2, "http_error", 410) for n in range(1, count + 1)
            ]
            assert letters[0].reason.startswith("HTTP 410 Gone")
            assert json.loads(letters[0].body)["message"]["content"] == "bot-gone #1"
            assert letters[0].first_attempt_at <= letters[0].last_attempt_at
            assert await s.store.webhook_dead_letters("bot-ok") == []
            metrics = await scrape(s.relay)
            assert (
                sample(metrics, "relay_deliveries_total", outcome="delivered", status_class="2xx")
                == count
            )
            assert (
                sample(metrics, "relay_deliveries_total", outcome="http_error", status_class="4xx")
                == 2 * count
            )
            assert sample(metrics, "relay_dead_letters_total", outcome="http_error") == count
            assert sample(metrics, "relay_webhook_failing", bot_id="bot-gone") == 1
            assert sample(metrics, "relay_webhook_failing", bot_id="bot-ok") == 0

            # The operator: list, retry while still gone (kept, one more attempt), skip.
            api = f"http://{s.gateway.address}/bots/bot-gone/webhook/dead-letters"
            auth = {"Authorization": f"Bearer {API_TOKEN}"}
            async with aiohttp.ClientSession(headers=auth) as http:
                async with http.get(api, params={"limit": "4"}) as r:
                    listed = await r.json()
                assert [x["sequence"] for x in listed["dead_letters"]] == [1, 2, 3, 4]
                assert listed["next_after"] == 4
                assert listed["dead_letters"][0]["payload"]["sequence"] == 1
                async with http.post(f"{api}/1/retry") as r:
                    assert r.status == 502
                    assert (await r.json())["status"] == 410
                kept = await s.store.get_webhook_dead_letter("bot-gone", 1)
                assert kept is not None and kept.attempts == 3
                async with http.delete(f"{api}/2") as r:
                    assert r.status == 200
                async with http.delete(f"{api}/2") as r:
                    assert r.status == 404
                async with http.post(f"{api}/0/retry") as r:
                    assert r.status == 400
                async with http.get(api) as r:
                    assert [x["sequence"] for x in (await r.json())["dead_letters"]] == [
                        1,
                        3,
                        4,
                        5,
                        6,
                    ]
                async with aiohttp.ClientSession() as anonymous, anonymous.get(api) as r:
                    assert r.status == 401

                # The receiver is back: a retry delivers now (same key, next attempt number).
                receiver.status["bot-gone"] = 200
                async with http.post(f"{api}/1/retry") as r:
                    assert r.status == 200
                    assert await r.json() == {
                        "bot_id": "bot-gone",
                        "sequence": 1,
                        "delivered": True,
                        "outcome": "delivered",
                        "status": 200,
                        "reply": "none",
                    }
                assert receiver.attempts[-1] == ("bot-gone:1", 4)
                assert await s.store.get_webhook_dead_letter("bot-gone", 1) is None

            # The same through the admin CLI.
            code, out = await admin(s.gateway, "webhook-dead-letters", "bot-gone")
            assert code == 0 and [line.split()[0] for line in out.splitlines()] == [
                "3",
                "4",
                "5",
                "6",
            ]
            code, out = await admin(s.gateway, "webhook-retry", "bot-gone", "3")
            assert code == 0 and "delivered bot-gone:3" in out
            code, out = await admin(s.gateway, "webhook-skip", "bot-gone", "4")
            assert code == 0 and "skipped bot-gone:4" in out
            code, out = await admin(s.gateway, "webhook-skip", "bot-gone", "4")
            assert code == 1 and "404" in out
            # A reply in the retried delivery's answer goes into the outbox under the relay's
            # own key for that message (no Node is connected here: it waits there).
            receiver.replies["bot-gone"] = "thanks"
            code, out = await admin(s.gateway, "webhook-retry", "bot-gone", "5")
            assert code == 0 and "reply: accepted" in out, out
            pending = await s.store.get_outgoing("bot-gone", "reply:5")
            assert pending is not None and pending.status.value == "pending", pending
            del receiver.replies["bot-gone"]
            assert (await admin(s.gateway, "webhook-retry", "bot-gone", "6"))[0] == 0
            assert await s.store.webhook_dead_letters("bot-gone") == []
            assert receiver.keys("bot-gone")["bot-gone:2"] == 2  # skipped: never again

            # No dead letter left and nothing in flight: the bot is no longer failing.
            async def cleared() -> bool:
                metrics = await scrape(s.relay)
                return sample(metrics, "relay_webhook_failing", bot_id="bot-gone") == 0

            await eventually(cleared)
            # New messages of the recovered bot flow again.
            await s.stub.AddMessage(text("bot-gone", count + 1))

            async def seventh() -> bool:
                return await cursor(s.store, "bot-gone") == count + 1

            await eventually(seventh)
            assert receiver.keys("bot-gone")[f"bot-gone:{count + 1}"] == 1

            # SSRF when configured: internal targets are refused, nothing is written.
            before = await s.store.get_bot_config("bot-ok")
            for url in (
                "http://169.254.169.254/latest/meta-data/",
                "http://10.0.0.5/hook",
                "http://localhost:9/hook",
                "http://[::1]:9/hook",
            ):
                async with (
                    aiohttp.ClientSession(headers=auth) as http,
                    http.put(
                        f"http://{s.gateway.address}/bots/bot-ok/config",
                        json={"webhook_url": url, "webhook_secret": SECRET},
                    ) as r,
                ):
                    assert r.status == 400, url
                    assert "refused" in (await r.json())["error"]
            assert await s.store.get_bot_config("bot-ok") == before
    assert receiver.bad_signatures == 0


async def test_redirects_and_internal_addresses_are_never_followed(tmp_path: Path) -> None:
    other_hits: list[str] = []

    async def elsewhere(request: web.Request) -> web.Response:
        other_hits.append(request.path)
        return web.Response(text="ok")

    async with serve({"/{tail:.*}": elsewhere}) as other:
        receiver = Receiver()

        async def redirect(_: web.Request) -> web.Response:
            raise web.HTTPTemporaryRedirect(f"{other}/stolen")

        receiver.extra["bot-307"] = redirect
        async with serve({"/hook/{bot}": receiver.hook}) as base:
            hooks = {
                "bot-307": f"{base}/hook/bot-307",
                # Written straight to the store, past the gateway's check: the relay
                # refuses on connect.
                "bot-internal": "http://10.0.0.5:9/hook",
                "bot-localhost": f"http://localhost:{base.rsplit(':', 1)[1]}/hook/bot-localhost",
            }
            async with stack(tmp_path, hooks) as s:
                for bot in hooks:
                    await s.stub.AddMessage(text(bot, 1))

                async def handled() -> bool:
                    return all([await cursor(s.store, bot) == 1 for bot in hooks])

                await eventually(handled)
                redirected = await s.store.get_webhook_dead_letter("bot-307", 1)
                assert redirected is not None
                # 307 is not permanent: all RELAY_MAX_ATTEMPTS (3) attempts, none followed.
                assert (redirected.outcome, redirected.status, redirected.attempts) == (
                    "redirect",
                    307,
                    3,
                )
                assert "not followed" in redirected.reason
                for bot in ("bot-internal", "bot-localhost"):
                    refused = await s.store.get_webhook_dead_letter(bot, 1)
                    assert refused is not None, bot
                    assert (refused.outcome, refused.status, refused.attempts) == (
                        "refused_destination",
                        None,
                        2,
                    )
                metrics = await scrape(s.relay)
    assert other_hits == []
    assert receiver.keys("bot-307") == Counter({"bot-307:1": 3})
    assert receiver.keys("bot-localhost") == Counter()
    assert sample(metrics, "relay_deliveries_total", outcome="redirect", status_class="3xx") == 3
    assert sample(metrics, "relay_deliveries_total", outcome="delivered", status_class="2xx") == 0
    assert (
        sample(
            metrics, "relay_deliveries_total", outcome="refused_destination", status_class="none"
        )
        == 4
    )


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


async def test_a_1gb_answer_leaves_relay_memory_flat(tmp_path: Path) -> None:
    sent: dict[str, int] = {}
    chunk = bytes(MiB)

    def streaming(status: int) -> Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            response = web.StreamResponse(status=status)
            response.content_type = "application/json"
            await response.prepare(request)
            key = request.headers[IDEMPOTENCY_HEADER] + f"#{request.headers[ATTEMPT_HEADER]}"
            sent[key] = 0
            try:
                for _ in range(1024):  # 1 GiB, unless the relay hangs up first
                    await response.write(chunk)
                    sent[key] += len(chunk)
            except ConnectionError:
                pass
            return response

        return handler

    receiver = Receiver()
    receiver.extra["bot-huge-ok"] = streaming(200)
    receiver.extra["bot-huge-gone"] = streaming(410)
    async with serve({"/hook/{bot}": receiver.hook}) as base:
        hooks = {bot: f"{base}/hook/{bot}" for bot in ("bot-warm", "bot-huge-ok", "bot-huge-gone")}
        async with stack(tmp_path, hooks) as s:
            # Warm up every path once (a delivery, the store, the metrics) before measuring.
            await s.stub.AddMessage(text("bot-warm", 1))

            async def warm() -> bool:
                return await cursor(s.store, "bot-warm") == 1

            await eventually(warm)
            await scrape(s.relay)
            start = rss_bytes(s.relay.process.pid)
            for bot in ("bot-huge-ok", "bot-huge-gone"):
                await s.stub.AddMessage(text(bot, 1))

            async def handled() -> bool:
                return all(
                    [await cursor(s.store, bot) == 1 for bot in ("bot-huge-ok", "bot-huge-gone")]
                )

            await eventually(handled, within=60)
            end = rss_bytes(s.relay.process.pid)
            ok_letter = await s.store.get_webhook_dead_letter("bot-huge-ok", 1)
            gone_letter = await s.store.get_webhook_dead_letter("bot-huge-gone", 1)
            metrics = await scrape(s.relay)
    growth = end - start
    print(
        f"relay RSS start={start / MiB:.1f} MiB end={end / MiB:.1f} MiB"
        f" growth={growth / MiB:.1f} MiB; MiB the server got out per attempt:"
        f" { {k: v // MiB for k, v in sent.items()} }"
    )
    assert growth < 50 * MiB
    # The relay hung up long before the gigabyte: the server could not send it.
    assert sent and all(v < 256 * MiB for v in sent.values())
    # A 2xx with a huge answer is delivered (its reply ignored); a 410 is dead-lettered.
    assert ok_letter is None
    assert gone_letter is not None and gone_letter.status == 410
    assert sample(metrics, "relay_replies_total", outcome="too_large") == 1


async def test_the_body_carries_details_reply_and_context(tmp_path: Path) -> None:
    receiver = Receiver()
    async with (
        serve({"/hook/{bot}": receiver.hook}) as base,
        stack(tmp_path, {"bot-rich": f"{base}/hook/bot-rich"}) as s,
    ):
        request = text("bot-rich", 1)
        request.message.content = "📍 Office"
        request.message.details.location.CopyFrom(
            d.Location(latitude=52.52, longitude=13.405, coordinates_valid=True, name="Office")
        )
        request.message.reply_to.CopyFrom(
            d.ReplyContext(quoted_message_id="WA-0", quoted_sender=CHAT, snippet="where?")
        )
        request.message.context.CopyFrom(
            c.MessageContext(
                correspondent_id_kind=c.ID_KIND_PHONE,
                correspondent_phone="4915100000001",
                chat_kind=c.CHAT_KIND_DIRECT,
                from_owner=True,
                mentions=[c.Mention(jid="4915100000009@s.whatsapp.net", is_bot=True)],
            )
        )
        await s.stub.AddMessage(request)

        async def delivered() -> bool:
            return "bot-rich:1" in receiver.bodies

        await eventually(delivered)
    document = json.loads(receiver.bodies["bot-rich:1"])
    message = document["message"]
    assert (document["bot_id"], document["sequence"], document["correspondent_id"]) == (
        "bot-rich",
        1,
        CHAT,
    )
    assert message["details"]["location"]["latitude"] == 52.52
    assert message["details"]["location"]["name"] == "Office"
    assert message["reply_to"]["quoted_message_id"] == "WA-0"
    assert message["reply_to"]["quoted_sender"] == CHAT
    assert message["context"]["from_owner"] is True
    assert message["context"]["correspondent_phone"] == "4915100000001"
    assert message["context"]["correspondent_id_kind"] == "ID_KIND_PHONE"
    assert message["context"]["mentions"] == [
        {"jid": "4915100000009@s.whatsapp.net", "is_bot": True}
    ]
    assert message["source"] == "user" and message["provider_message_id"] == "WA-1"
    assert receiver.bad_signatures == 0
