"""Shared parts of the end-to-end benches (text path, soak, faults, memory): the real
services as subprocesses on loopback, frames as Node sends them, a sender that behaves
like Node's outbox, a consumer that keeps its cursors, and resident-memory sampling."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import grpc
from aiohttp import web
from chatbot.common.v1 import message_pb2
from chatbot.queue.v1 import queue_service_pb2 as q
from chatbot.queue.v1 import queue_service_pb2_grpc as q_grpc
from chatbot.wire.v1 import frames_pb2 as w

from services.common.store import BotConfig, StoreConfig, open_store
from services.common.subscribe_batches import SUBSCRIBE_MAX_BATCH, delivered
from services.common.wire import parse_gateway_frame
from services.common.wire_batch import BATCH_HEADER, BATCH_VERSION, join_frames, split_frames
from tests.helpers.clock import iso_now
from tests.helpers.definitions import MEDIA_POOLS, stub_definitions
from tests.helpers.fixtures import load_fixtures
from tests.helpers.processes import (
    Service,
    gateway_env,
    media_env,
    queue_env,
    start_service,
)
from tests.helpers.waiting import wait_until

NODE_TOKEN = "bench-node-secret"
API_TOKEN = "bench-api-secret"
# The gateway calls Node's API only for the lifecycle API, which the benches bypass.
NODE_URL = "http://127.0.0.1:9"


def percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def rss_mb(pid: int) -> float:
    """Resident memory of a process (VmRSS), in MB; 0 when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far; on a shared machine the CPU
    cost per message is the figure other processes' load does not change much."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # utime and stime are fields 14 and 15 of stat(5); fields[0] here is field 3.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- frames -----------------------------------------------------------------------


def _header(bot: str, chat: str, provider_id: str) -> dict[str, str]:
    return {
        "botId": bot,
        "correspondentId": chat,
        "sender": chat,
        "providerMessageId": provider_id,
        "originatingTime": iso_now(),
    }


def text_frame(frame_id: str, bot: str, chat: str, provider_id: str, text: str) -> str:
    payload = {"header": _header(bot, chat, provider_id), "message": text}
    return json.dumps({"frameId": frame_id, "textMessage": payload})


def structured_details() -> list[tuple[str, dict[str, Any]]]:
    """The `details` of every valid structured fixture: (fixture name, details)."""
    return [
        (name, case["frame"]["structuredMessage"]["details"])
        for name, case in load_fixtures("valid")
        if name.startswith("structured_") and "huge" not in name
    ]


def structured_frame(
    frame_id: str, bot: str, chat: str, provider_id: str, details: Mapping[str, Any]
) -> str:
    payload = {"header": _header(bot, chat, provider_id), "details": details}
    return json.dumps({"frameId": frame_id, "structuredMessage": payload})


MEDIA_KINDS = (
    ("MEDIA_KIND_IMAGE", "image/jpeg"),
    ("MEDIA_KIND_STICKER", "image/webp"),
    ("MEDIA_KIND_AUDIO", "audio/ogg"),
    ("MEDIA_KIND_VIDEO", "video/mp4"),
    ("MEDIA_KIND_DOCUMENT", "application/pdf"),
)


def media_frame(
    frame_id: str,
    bot: str,
    chat: str,
    provider_id: str,
    kind: str,
    mime: str,
    staging: Path,
    content: bytes = b"bench media",
) -> str:
    """A media frame whose file Node has staged (stub processors ignore its bytes)."""
    job = str(uuid.uuid4())
    (staging / job).write_bytes(content)
    payload = {
        "header": _header(bot, chat, provider_id),
        "message": "",
        "mediaProcessingId": job,
        "mimeType": mime,
        "mediaKind": kind,
        "fileSize": str(len(content)),
    }
    return json.dumps({"frameId": frame_id, "mediaMessage": payload})


# --- the services -----------------------------------------------------------------


@dataclass
class Stack:
    """queue_svc + gateway (+ media_svc, + relay) on one SQLite store in `root`."""

    root: Path
    queue_port: int
    services: dict[str, Service] = field(default_factory=dict)
    # 0 until the first start; restarts keep the address Node was given.
    gateway_port: int = 0
    # Per service kind, variables over the defaults of `env`.
    extra_env: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def db(self) -> Path:
        return self.root / "store.sqlite3"

    @property
    def staging(self) -> Path:
        return self.root / "staging"

    @property
    def queue_address(self) -> str:
        return f"127.0.0.1:{self.queue_port}"

    def env(self, name: str) -> dict[str, str]:
        quiet = {"LOG_LEVEL": "WARNING"}
        if name == "queue_svc":
            return {**queue_env(self.db, port=self.queue_port), **quiet}
        if name == "gateway":
            env = gateway_env(
                self.db,
                self.queue_address,
                NODE_URL,
                node_ws_token=NODE_TOKEN,
                api_token=API_TOKEN,
                node_api_token="unused",
            )
            return {**env, **quiet, "GATEWAY_PORT": str(self.gateway_port)}
        if name == "media_svc":
            return media_env(self.db, self.staging, self.queue_address, **quiet)
        if name == "relay":
            return {
                "STORE_BACKEND": "sqlite",
                "SQLITE_PATH": str(self.db),
                "RELAY_HOST": "127.0.0.1",
                "RELAY_PORT": "0",
                "QUEUE_SVC_ADDRESS": self.queue_address,
                "RELAY_GATEWAY_URL": "http://127.0.0.1:9",
                "RELAY_GATEWAY_API_TOKEN": API_TOKEN,
                # The bench's receiver listens on loopback, which the SSRF guard refuses.
                "OUTBOUND_ALLOW_HOSTS": "127.0.0.1",
                **quiet,
            }
        raise ValueError(f"unknown service {name!r}")

    async def start(self, name: str) -> Service:
        return await self.start_named(name, name)

    async def start_named(self, kind: str, name: str) -> Service:
        """Starts service `kind` as `name` (a second media_svc replica: `media_svc_2`)."""
        module = {
            "queue_svc": "services.queue_svc",
            "gateway": "services.gateway",
            "media_svc": "services.media_svc",
            "relay": "services.relay",
        }[kind]
        self.staging.mkdir(parents=True, exist_ok=True)
        env = {**self.env(kind), **self.extra_env.get(kind, {})}
        service = await start_service(module, env, self.root / f"{name}.log", 120)
        self.services[name] = service
        if kind == "gateway" and not self.gateway_port:
            self.gateway_port = int(service.address.rsplit(":", 1)[1])
        return service

    def pid(self, name: str) -> int:
        return self.services[name].process.pid

    @property
    def ws_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}/ws"

    async def stop_all(self) -> None:
        # Callers of queue_svc first, queue_svc last.
        for name in sorted(self.services, key=lambda n: n.startswith("queue_svc")):
            await self.services.pop(name).stop()


async def start_bots(address: str, bots: list[str]) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = q_grpc.QueueServiceStub(channel)
        for bot in bots:
            await stub.StartBot(q.StartBotRequest(bot_id=bot), timeout=30)


# --- Node's side: a sender with an outbox ----------------------------------------


@dataclass
class Outcome:
    """How the gateway answered one frame, as Node's outbox sees it."""

    sent_at: float
    attempts: int = 1
    status: int = 0


#: What Node's gateway client puts in one batched WebSocket message at most
#: (whatsapp_baileys_server/src/wire_batch.js MAX_BATCH_CHARS).
MAX_BATCH_CHARS = 64 * 1024


class Outbox:
    """Node's outbox in miniature: every frame is kept until ACCEPTED, DUPLICATE or
    REJECTED; RETRY and unanswered frames are resent (after a reconnect, all of them).

    With `batched`, it offers frame batches as the real Node server does
    (services/common/wire_batch.py): when the gateway accepts, the frames sent in one
    event-loop turn leave as one WebSocket message (up to MAX_BATCH_CHARS, as Node's
    `process.nextTick` flush), and acks may arrive several per message."""

    def __init__(
        self, ws_url: str, window: int = 512, retry_after: float = 1.0, *, batched: bool = False
    ) -> None:
        self.ws_url = ws_url
        self.window = window
        self.retry_after = retry_after
        self.offer_batches = batched
        #: True once the gateway accepted frame batches on the current connection.
        self.batched = False
        self.messages_sent = 0
        self._batch: list[str] = []
        self._batch_chars = 0
        self._batch_scheduled = False
        self.frames: dict[str, str] = {}
        self.outcomes: dict[str, Outcome] = {}
        self.pending: dict[str, float] = {}
        self.accepted_at: dict[str, float] = {}
        self.reconnects = 0
        self._room = asyncio.Semaphore(window)
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._retry_task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession()
        self._task = asyncio.create_task(self._run())
        self._retry_task = asyncio.create_task(self._resend_forever())
        async with asyncio.timeout(30):
            await self._connected.wait()

    async def send(self, frame_id: str, text: str) -> None:
        await self._room.acquire()
        self.frames[frame_id] = text
        now = time.perf_counter()
        self.outcomes[frame_id] = Outcome(sent_at=now)
        self.pending[frame_id] = now
        await self._transmit(frame_id)

    async def _transmit(self, frame_id: str) -> None:
        ws = self._ws
        if ws is None or ws.closed:
            return  # resent after the reconnect
        text = self.frames[frame_id]
        if self.batched:
            self._join_batch(ws, text)
            return
        with contextlib.suppress(ConnectionError, RuntimeError):
            self.messages_sent += 1
            await ws.send_str(text)

    def _join_batch(self, ws: aiohttp.ClientWebSocketResponse, text: str) -> None:
        if self._batch and self._batch_chars + len(text) > MAX_BATCH_CHARS:
            self._flush_batch(ws)
        self._batch.append(text)
        self._batch_chars += len(text) + 1
        if not self._batch_scheduled:
            self._batch_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_scheduled, ws)

    def _flush_scheduled(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._batch_scheduled = False
        self._flush_batch(ws)

    def _flush_batch(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        frames, self._batch, self._batch_chars = self._batch, [], 0
        if not frames or ws.closed or ws is not self._ws:
            return  # resent after the reconnect, as Node does
        self.messages_sent += 1
        # send_str only writes to the transport (no flow control awaited on loopback);
        # a failure surfaces as the connection's end, and the frames are resent.
        task = asyncio.ensure_future(ws.send_str(join_frames(frames)))
        task.add_done_callback(_ignore_send_failure)

    async def _run(self) -> None:
        assert self._session is not None
        headers = {"Authorization": f"Bearer {NODE_TOKEN}"}
        if self.offer_batches:
            headers[BATCH_HEADER] = BATCH_VERSION
        while True:
            try:
                async with self._session.ws_connect(
                    self.ws_url, headers=headers, max_msg_size=0
                ) as ws:
                    self._ws = ws
                    self.batched = self.offer_batches and (
                        ws._response.headers.get(BATCH_HEADER) == BATCH_VERSION
                    )
                    self._batch, self._batch_chars = [], 0
                    self._connected.set()
                    for frame_id in list(self.pending):
                        await self._transmit(frame_id)
                    async for message in ws:
                        if message.type == aiohttp.WSMsgType.TEXT:
                            for text in (
                                split_frames(message.data) if self.batched else [message.data]
                            ):
                                self._answered(parse_gateway_frame(text).ack)
            except (aiohttp.ClientError, ConnectionError, OSError):
                pass
            self._ws = None
            self.reconnects += 1
            await asyncio.sleep(0.1)

    def _answered(self, ack: w.Ack) -> None:
        if ack.frame_id not in self.pending:
            return  # a late answer to a frame already settled
        outcome = self.outcomes[ack.frame_id]
        outcome.status = ack.status
        if ack.status == w.ACK_STATUS_RETRY:
            return  # resent by _resend_forever
        del self.pending[ack.frame_id]
        if ack.status in (w.ACK_STATUS_ACCEPTED, w.ACK_STATUS_DUPLICATE):
            self.accepted_at[ack.frame_id] = time.perf_counter()
        self._room.release()

    async def _resend_forever(self) -> None:
        while True:
            await asyncio.sleep(self.retry_after / 2)
            now = time.perf_counter()
            for frame_id, last in list(self.pending.items()):
                if now - last >= self.retry_after and frame_id in self.pending:
                    self.pending[frame_id] = now
                    self.outcomes[frame_id].attempts += 1
                    await self._transmit(frame_id)

    async def drain(self, within: float) -> None:
        await wait_until(lambda: not self.pending, within)

    async def close(self) -> None:
        for task in (self._task, self._retry_task):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if self._session is not None:
            await self._session.close()


def _ignore_send_failure(task: asyncio.Future[None]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved: the connection's end resends the frames


# --- the bot logic's side: a consumer that keeps its cursors -----------------------


class TimedConsumer:
    """`tests/helpers/delivery.py`'s ResumingSubscriber, recording when each message
    arrived (perf_counter) by provider message id."""

    def __init__(self, address: str, bots: list[str]) -> None:
        self.address = address
        self.cursors: dict[str, int] = dict.fromkeys(bots, 0)
        self.messages: list[message_pb2.AddressedMessage] = []
        self.arrived: dict[str, list[float]] = {}
        self.reconnects = 0
        self.changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            try:
                async with grpc.aio.insecure_channel(self.address) as channel:
                    stub = q_grpc.QueueServiceStub(channel)
                    request = q.SubscribeRequest(
                        cursors=[
                            q.BotCursor(bot_id=bot, after_sequence=after)
                            for bot, after in self.cursors.items()
                        ],
                        max_batch=SUBSCRIBE_MAX_BATCH,
                    )
                    async for response in stub.Subscribe(request):
                        now = time.perf_counter()
                        for message in delivered(response):
                            self.messages.append(message)
                            pid = message.message.provider_message_id
                            self.arrived.setdefault(pid, []).append(now)
                            self.cursors[message.bot_id] = message.sequence
                        self.changed.set()
            except grpc.aio.AioRpcError:
                pass
            self.reconnects += 1
            await asyncio.sleep(0.05)

    async def wait_for(self, provider_ids: set[str], within: float) -> bool:
        """True once every id arrived; False when `within` ran out first."""
        try:
            async with asyncio.timeout(within):
                # The length first: a subset test per arrival is quadratic in the run.
                while len(self.arrived) < len(provider_ids) or not provider_ids.issubset(
                    self.arrived.keys()
                ):
                    self.changed.clear()
                    await self.changed.wait()
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


# --- realistic mixed traffic --------------------------------------------------------


class MixedTraffic:
    """Frames as a busy Node sends them: mostly text, every structured kind of the wire
    fixtures, every media kind (through whatever pools media_svc runs), spread over
    `bots` x `chats`. `kinds[provider id]` says what each frame was."""

    def __init__(
        self,
        tag: str,
        bots: list[str],
        chats: int,
        staging: Path,
        *,
        structured_share: float = 0.1,
        media_share: float = 0.1,
    ) -> None:
        self.tag = tag
        self.bots = bots
        self.chats = [f"4916{i:08d}@s.whatsapp.net" for i in range(chats)]
        self.staging = staging
        self.structured = structured_details()
        self.structured_every = round(1 / structured_share) if structured_share else 0
        self.media_every = round(1 / media_share) if media_share else 0
        self.kinds: dict[str, str] = {}
        self._n = 0

    def next(self) -> tuple[str, str, str]:
        """(frame id, provider id, frame text)."""
        n = self._n
        self._n += 1
        bot = self.bots[n % len(self.bots)]
        chat = self.chats[(n // len(self.bots)) % len(self.chats)]
        provider_id = f"{self.tag}-{n}"
        frame_id = f"f-{provider_id}"
        if self.media_every and n % self.media_every == 1:
            kind, mime = MEDIA_KINDS[(n // self.media_every) % len(MEDIA_KINDS)]
            self.kinds[provider_id] = kind
            text = media_frame(frame_id, bot, chat, provider_id, kind, mime, self.staging)
        elif self.structured_every and n % self.structured_every == 2:
            name, details = self.structured[(n // self.structured_every) % len(self.structured)]
            self.kinds[provider_id] = name
            text = structured_frame(frame_id, bot, chat, provider_id, details)
        else:
            self.kinds[provider_id] = "text"
            body = f"{provider_id} " + "x" * 80
            text = text_frame(frame_id, bot, chat, provider_id, body)
        return frame_id, provider_id, text


FAILURE_MARK = "could not be processed"


@dataclass
class Tally:
    """What the consumer saw against what the gateway accepted."""

    sent: int
    accepted: int
    rejected: int
    delivered_once: int
    failure_markers: int
    lost: int
    duplicated: int

    def line(self) -> str:
        return (
            f"sent={self.sent} accepted={self.accepted} rejected={self.rejected}"
            f" delivered_once={self.delivered_once} failure_markers={self.failure_markers}"
            f" lost={self.lost} duplicated={self.duplicated}"
        )


def tally(outbox: Outbox, consumer: TimedConsumer) -> Tally:
    accepted = {f[2:] for f in outbox.accepted_at}
    rejected = sum(1 for o in outbox.outcomes.values() if o.status == w.ACK_STATUS_REJECTED)
    seen = consumer.arrived
    markers = sum(
        1
        for m in consumer.messages
        if m.message.provider_message_id in accepted and FAILURE_MARK in m.message.content
    )
    return Tally(
        sent=len(outbox.outcomes),
        accepted=len(accepted),
        rejected=rejected,
        delivered_once=sum(1 for p in accepted if len(seen.get(p, ())) == 1),
        failure_markers=markers,
        lost=sum(1 for p in accepted if p not in seen),
        duplicated=sum(1 for times in seen.values() if len(times) > 1),
    )


class MemorySampler:
    """Samples each running service's VmRSS every `interval` seconds."""

    def __init__(self, stack: Stack, interval: float = 2.0) -> None:
        self.stack = stack
        self.interval = interval
        self.samples: dict[str, list[tuple[float, float]]] = {}
        self._task: asyncio.Task[None] | None = None
        self.started = time.perf_counter()

    def start(self) -> None:
        self.started = time.perf_counter()
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            now = time.perf_counter() - self.started
            for name, service in list(self.stack.services.items()):
                if service.process.returncode is None:
                    value = rss_mb(service.process.pid)
                    self.samples.setdefault(name, []).append((now, value))
            await asyncio.sleep(self.interval)

    def growth(self, warm_up: float) -> dict[str, tuple[float, float, float]]:
        """Per service: (MB at the end of warm-up, MB at the end, growth %). The end is the
        mean of the last fifth of the samples, so one sample's noise does not decide."""
        result = {}
        for name, samples in self.samples.items():
            after = [mb for t, mb in samples if t >= warm_up]
            if len(after) < 2:
                continue
            tail = after[-max(1, len(after) // 5) :]
            start, end = after[0], sum(tail) / len(tail)
            result[name] = (start, end, (end - start) / start * 100)
        return result

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


class WebhookReceiver:
    """A chatbot builder's webhook on loopback: answers 200 and counts each
    Idempotency-Key (the relay delivers at least once)."""

    def __init__(self) -> None:
        self.keys: dict[str, int] = {}
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/hook"

    async def _hook(self, request: web.Request) -> web.Response:
        await request.read()
        key = request.headers.get("Idempotency-Key", "")
        self.keys[key] = self.keys.get(key, 0) + 1
        return web.json_response({})

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


async def configure_bots(stack: Stack, bots: list[str], webhook_url: str | None) -> None:
    """Zero-delay stub pools (the pipeline's cost, not an engine's) and, when given, a
    webhook for every bot, written to the store before the services start."""
    store = await open_store(StoreConfig(backend="sqlite", sqlite_path=stack.db))
    try:
        await store.put_processor_definitions(
            stub_definitions({name: {"delay_seconds": 0.0} for name in MEDIA_POOLS})
        )
        if webhook_url is not None:
            for bot in bots:
                await store.put_bot_config(
                    BotConfig(
                        bot_id=bot,
                        webhook_url=webhook_url,
                        webhook_secret="bench-webhook-secret-0123",
                        webhook_since_sequence=0,
                    )
                )
    finally:
        await store.close()
