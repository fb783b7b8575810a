"""`make demo`: the whole pipeline on the embedded SQLite store, end to end, with the
real media processors.

Makes its media at run time (voice notes in English and Spanish spoken by espeak-ng,
a photo and stickers with text, a video with speech and a text frame, a PDF, a DOCX, a
broken download, a zip, an over-quota photo) and sends the structured kinds too (a
location, a contact, a poll and a vote, a reaction, a reply, an edit and a deletion).
Starts queue_svc, media_svc, the gateway and the Node server (real processes on
loopback), starts two bots through the gateway's lifecycle API, and lets the Node
server replay the conversation (its WhatsApp socket is the only stand-in: WhatsApp
cannot be reached from here). Shows each media message go placeholder → processing →
text, prints what the bot received per correspondent and the figures of the run, sends
a bot reply back to WhatsApp, checks the outcome and exits non-zero if any check fails.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import os
import secrets
import shutil
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import grpc
from chatbot.common.v1 import message_pb2
from chatbot.queue.v1 import queue_service_pb2 as q
from chatbot.queue.v1 import queue_service_pb2_grpc as q_grpc
from rich.console import Console
from rich.live import Live
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from services.common.store import JobCollection, StoreConfig, open_store  # noqa: E402
from services.media_svc.processors.base import KIND_LABELS  # noqa: E402
from tests.helpers import demo_media  # noqa: E402
from tests.helpers.processes import (  # noqa: E402
    Service,
    free_port,
    gateway_env,
    media_env,
    queue_env,
    start_service,
)

DEMO_BOT = "demo-bot"
FULL_BOT = "full-storage-bot"
ALICE = "4915100000001@s.whatsapp.net"
BOB = "4915100000002@s.whatsapp.net"
FAMILY = "120363000000000001@g.us"
# A contact WhatsApp already addresses by LID, with the phone number beside it.
CAROL_LID = "160000000000003@lid"
CAROL_PHONE = "4915100000003"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


# --- the conversation --------------------------------------------------------------


@dataclass
class Expectation:
    """What the bot must receive for one script entry (all words, case-insensitive)."""

    bot: str
    kind: str
    words: tuple[str, ...] = ()
    exact: str | None = None
    # A typed-field check beside the text (identity, owner, edit), and what it checks.
    check: Callable[[message_pb2.AddressedMessage], bool] | None = None
    checks: str = ""


@dataclass
class Conversation:
    script: Path
    # In script order per bot: the Node server injects entries in that order.
    expectations: dict[str, list[Expectation]]

    @property
    def total(self) -> int:
        return sum(len(e) for e in self.expectations.values())


def write_script(directory: Path) -> Conversation:
    media_dir = directory / "media"
    media_dir.mkdir(parents=True)
    en, es = demo_media.english_voice_note(media_dir), demo_media.spanish_voice_note(media_dir)
    photo, thanks = demo_media.photo_with_text(media_dir), demo_media.static_sticker(media_dir)
    wow, parcel = demo_media.animated_sticker(media_dir), demo_media.video_with_speech(media_dir)
    menu, agenda = demo_media.pdf_menu(media_dir), demo_media.docx_agenda(media_dir)
    archive = demo_media.zip_archive(media_dir)
    demo: list[tuple[dict[str, Any], Expectation]] = [
        (
            {
                "from": ALICE,
                "type": "text",
                "text": "Hi! I'll send you a few things.",
                "label": "hi",
            },
            Expectation(DEMO_BOT, "text", exact="Hi! I'll send you a few things."),
        ),
        (
            {"type": "voice_note", "file": str(en.path), "mimetype": "audio/ogg; codecs=opus"},
            Expectation(DEMO_BOT, "voice note", en.expect),
        ),
        (
            {"type": "text", "text": "This text comes right after the voice note."},
            Expectation(DEMO_BOT, "text", exact="This text comes right after the voice note."),
        ),
        (
            {"type": "voice_note", "file": str(es.path), "mimetype": "audio/ogg; codecs=opus"},
            Expectation(DEMO_BOT, "voice note", es.expect),
        ),
        (
            {
                "type": "image",
                "file": str(photo.path),
                "mimetype": "image/jpeg",
                "caption": "our new opening hours",
            },
            Expectation(DEMO_BOT, "image", (*photo.expect, "Caption: our new opening hours")),
        ),
        (
            {"type": "sticker", "file": str(thanks.path), "mimetype": "image/webp"},
            Expectation(DEMO_BOT, "sticker", thanks.expect),
        ),
        (
            {"type": "sticker", "file": str(wow.path), "mimetype": "image/webp", "animated": True},
            Expectation(DEMO_BOT, "sticker", wow.expect),
        ),
        (
            {"type": "video", "file": str(parcel.path), "mimetype": "video/mp4", "seconds": 3},
            Expectation(DEMO_BOT, "video", parcel.expect),
        ),
        (
            {
                "type": "document",
                "file": str(menu.path),
                "mimetype": "application/pdf",
                "filename": "menu.pdf",
                "caption": "what do you think?",
            },
            Expectation(DEMO_BOT, "document", (*menu.expect, "Caption: what do you think?")),
        ),
        (
            {
                "type": "document",
                "file": str(agenda.path),
                "mimetype": DOCX,
                "filename": "agenda.docx",
            },
            Expectation(DEMO_BOT, "document", agenda.expect),
        ),
        (
            {"type": "image", "file": str(photo.path), "download_fails": True},
            Expectation(DEMO_BOT, "image", exact="[Corrupted image: could not be decoded]"),
        ),
        (
            {
                "type": "document",
                "file": str(archive.path),
                "mimetype": "application/zip",
                "filename": "archive.zip",
            },
            Expectation(DEMO_BOT, "document", exact="[Unsupported media: application/zip]"),
        ),
        (
            {
                "type": "location",
                "latitude": 52.520008,
                "longitude": 13.404954,
                "name": "Alexanderplatz",
                "address": "10178 Berlin",
            },
            Expectation(DEMO_BOT, "location", ("Alexanderplatz", "52.52", "13.40")),
        ),
        (
            {"type": "contact", "name": "Jane Doe", "phone": "+49 151 23456789"},
            Expectation(DEMO_BOT, "contact", ("Jane Doe", "23456789")),
        ),
        (
            {
                "type": "poll",
                "label": "lunch",
                "question": "Where shall we eat?",
                "options": ["Pizza", "Sushi", "Salad"],
            },
            Expectation(DEMO_BOT, "poll", ("Where shall we eat?", "1. Pizza", "2. Sushi")),
        ),
        (
            {"type": "poll_vote", "poll": "lunch", "options": ["Sushi"]},
            Expectation(DEMO_BOT, "poll vote", ("Sushi", "Where shall we eat?")),
        ),
        (
            {"type": "reaction", "text": "👍", "target": "hi"},
            Expectation(DEMO_BOT, "reaction", ("👍",)),
        ),
        (
            {"type": "reply", "text": "Friday works for me.", "reply_to": "hi", "label": "reply"},
            Expectation(DEMO_BOT, "reply", ("Friday works for me.", "I'll send you a few")),
        ),
        (
            {"type": "edit", "target": "reply", "text": "Friday at 3 works for me."},
            Expectation(DEMO_BOT, "edit", ("Friday at 3 works for me.",)),
        ),
        (
            {"type": "delete", "target": "reply"},
            Expectation(DEMO_BOT, "deletion", ("deleted",)),
        ),
        (
            {
                "from": CAROL_LID,
                "phone_jid": f"{CAROL_PHONE}@s.whatsapp.net",
                "type": "text",
                "text": "Hi, it is Carol. Do you deliver on Sundays?",
                "label": "carol",
            },
            Expectation(
                DEMO_BOT,
                "text from a contact known by LID",
                exact="Hi, it is Carol. Do you deliver on Sundays?",
                check=lambda m: m.correspondent_id == CAROL_LID
                and m.message.context.correspondent_phone == CAROL_PHONE,
                checks=f"one correspondent {CAROL_LID} with phone +{CAROL_PHONE}",
            ),
        ),
        (
            {"type": "secret_edit", "target": "carol", "text": "Hi, it is Carol. Do you deliver?"},
            Expectation(
                DEMO_BOT,
                "edit sealed as newer clients send it",
                ("[Edited message", "Do you deliver?"),
                check=lambda m: m.message.details.edit.decrypted
                and m.correspondent_id == CAROL_LID,
                checks="decrypted with the original's messageSecret",
            ),
        ),
        (
            {
                "from": ALICE,
                "from_me": True,
                "type": "text",
                "text": "Thanks Alice, a colleague takes it from here.",
            },
            Expectation(
                DEMO_BOT,
                "message the owner typed on the phone",
                exact="[Owner]\nThanks Alice, a colleague takes it from here.",
                check=lambda m: m.message.context.from_owner,
                checks="from_owner: a human took over",
            ),
        ),
        (
            {
                "group": FAMILY,
                "group_name": "Family",
                "from": BOB,
                "type": "text",
                "text": "Dinner at 8?",
            },
            Expectation(DEMO_BOT, "text", exact="Dinner at 8?"),
        ),
    ]
    full: list[tuple[dict[str, Any], Expectation]] = [
        (
            {"from": BOB, "type": "text", "text": "Here is a photo for you."},
            Expectation(FULL_BOT, "text", exact="Here is a photo for you."),
        ),
        (
            {
                "type": "image",
                "file": str(photo.path),
                "mimetype": "image/jpeg",
                "caption": "sunset",
            },
            Expectation(FULL_BOT, "image", ("media storage is full", "Caption: sunset")),
        ),
    ]
    script = {
        "comment": "make demo: a conversation replayed by the Node server's demo socket",
        "default_delay_ms": 150,
        "bots": {DEMO_BOT: [e for e, _ in demo], FULL_BOT: [e for e, _ in full]},
    }
    path = directory / "conversation.json"
    path.write_text(json.dumps(script, indent=2, ensure_ascii=False))
    return Conversation(path, {DEMO_BOT: [x for _, x in demo], FULL_BOT: [x for _, x in full]})


# --- what the bot logic sees ------------------------------------------------------


@dataclass
class Received:
    at: float
    message: message_pb2.AddressedMessage


@dataclass
class BotView:
    """Subscribes like the bot reply logic would (from the start of every bot's stream)."""

    address: str
    started: float
    received: list[Received] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self, connected: asyncio.Event) -> None:
        async with grpc.aio.insecure_channel(self.address) as channel:
            stream = q_grpc.QueueServiceStub(channel).Subscribe(q.SubscribeRequest())
            await channel.channel_ready()
            connected.set()
            async for response in stream:
                self.received.append(Received(time.monotonic() - self.started, response.message))
                self.changed.set()

    def by_provider_id(self) -> dict[str, Received]:
        return {r.message.message.provider_message_id: r for r in self.received}

    async def wait_for(self, count: int, within: float) -> bool:
        try:
            async with asyncio.timeout(within):
                while len(self.received) < count:
                    self.changed.clear()
                    await self.changed.wait()
        except TimeoutError:
            return False
        return True


KINDS = KIND_LABELS


@dataclass
class MediaLine:
    bot: str
    kind: str
    state: str
    first_seen: float
    done_at: float | None = None
    text: str = ""


class MediaProgress:
    """One line per media message: placeholder → processing → text, with seconds.

    Follows the media jobs in the store (a job exists from the placeholder until its
    text is delivered) and the Subscribe stream. A live table on a terminal, plain
    lines (one per change of state) otherwise.
    """

    def __init__(self, db: Path, view: BotView, console: Console) -> None:
        self._db = db
        self._view = view
        self._console = console
        self.lines: dict[str, MediaLine] = {}

    def _table(self) -> Table:
        table = Table(title="media messages", expand=False)
        for column in ("bot", "kind", "state", "seconds", "text"):
            table.add_column(column)
        now = time.monotonic() - self._view.started
        for line in self.lines.values():
            seconds = (line.done_at or now) - line.first_seen
            text = line.text.replace("\n", " ")
            table.add_row(
                line.bot,
                line.kind,
                line.state,
                f"{seconds:5.1f}",
                text[:70] + "…" * (len(text) > 70),
            )
        return table

    def _update(self, key: str, state: str, text: str = "") -> None:
        line = self.lines[key]
        if line.state == state:
            return
        line.state = state
        if state == "text":
            line.done_at = time.monotonic() - self._view.started
            line.text = text
        if not self._console.is_terminal:
            seconds = (line.done_at or time.monotonic() - self._view.started) - line.first_seen
            shown = f": {text.splitlines()[0][:90]}" if text else ""
            print(f"  media {line.bot} {line.kind:<10} {state:<11} {seconds:5.1f} s{shown}")

    async def follow(self, stop: asyncio.Event) -> None:
        store = await open_store(StoreConfig(backend="sqlite", sqlite_path=self._db))
        live = Live(self._table(), console=self._console, refresh_per_second=4)
        if self._console.is_terminal:
            live.start()
        try:
            while not stop.is_set():
                await self._poll(store)
                if self._console.is_terminal:
                    live.update(self._table())
                await asyncio.sleep(0.25)
            await self._poll(store)
            if self._console.is_terminal:
                live.update(self._table())
        finally:
            if self._console.is_terminal:
                live.stop()
            await store.close()

    async def _poll(self, store: Any) -> None:
        now = time.monotonic() - self._view.started
        for bot in (DEMO_BOT, FULL_BOT):
            for collection in (JobCollection.ACTIVE, JobCollection.HOLDING):
                for job in await store.list_jobs(bot, collection):
                    key = job.provider_message_id
                    if key not in self.lines:
                        kind = KINDS.get(job.media_kind, job.media_kind)
                        self.lines[key] = MediaLine(bot, kind, "", now)
                        if not self._console.is_terminal:
                            print(f"  media {bot} {kind:<10} placeholder   0.0 s")
                        self.lines[key].state = "placeholder"
                    if job.status.value == "processing":
                        self._update(key, "processing")
        delivered = self._view.by_provider_id()
        for key in self.lines:
            if key in delivered:
                self._update(key, "text", delivered[key].message.message.content)


async def seed_definitions(db: Path) -> None:
    """The built-in table (real processors); the store file is new for every run."""
    from services.common.routing import default_definitions  # noqa: PLC0415

    store = await open_store(StoreConfig(backend="sqlite", sqlite_path=db))
    try:
        await store.put_processor_definitions(default_definitions().to_document())
    finally:
        await store.close()


# --- processes ---------------------------------------------------------------------


async def start_node(env: dict[str, str], port: int, log_path: Path, script: Path) -> Service:
    """The Node server prints nothing until a session starts: it is up when /healthz is."""
    log = log_path.open("ab")
    process = await asyncio.create_subprocess_exec(
        "node",
        "whatsapp_baileys_server/src/index.js",
        cwd=REPO,
        env={
            **os.environ,
            **env,
            "NODE_HOST": "127.0.0.1",
            "NODE_PORT": str(port),
            "NODE_DEMO_SCRIPT": str(script),
            "LOG_LEVEL": "warn",
        },
        stdout=asyncio.subprocess.PIPE,
        stderr=log,
    )
    service = Service("whatsapp_baileys_server", process, f"127.0.0.1:{port}", log)
    async with aiohttp.ClientSession() as http:
        for _ in range(300):
            if process.returncode is not None:
                break
            try:
                async with http.get(f"http://{service.address}/healthz") as response:
                    if response.status == 200:
                        return service
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    await service.stop()
    raise RuntimeError(f"the Node server did not come up; see {log_path}")


async def follow_stdout(service: Service, sink: list[dict[str, Any]]) -> None:
    assert service.process.stdout is not None
    async for raw in service.process.stdout:
        try:
            sink.append(json.loads(raw))
        except ValueError:
            continue


async def wait_for_media_warm(log: Path, within: float) -> None:
    """media_svc reports SERVING only once every pool's engines are loaded in every
    worker process (services/media_svc/readiness.py); the demo's first voice note should
    not pay for the model loads. A load that fails keeps it NOT_SERVING with the reason,
    which the demo's checks then show."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        text = await asyncio.to_thread(log.read_text, errors="replace")
        if '"ready: SERVING"' in text:
            return
        await asyncio.sleep(0.5)


# --- the run -----------------------------------------------------------------------


@dataclass
class Checks:
    results: list[tuple[bool, str]] = field(default_factory=list)

    def check(self, ok: bool, what: str) -> None:
        self.results.append((ok, what))
        print(f"  [{'ok' if ok else 'FAILED'}] {what}")

    @property
    def passed(self) -> bool:
        return all(ok for ok, _ in self.results)


async def api(
    http: aiohttp.ClientSession, method: str, url: str, token: str, body: dict[str, Any]
) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    async with http.request(method, url, json=body, headers=headers) as response:
        answer: dict[str, Any] = await response.json()
        if response.status >= 400:
            raise RuntimeError(f"{method} {url} → {response.status}: {answer}")
        return answer


async def wait_sent(http: aiohttp.ClientSession, url: str, token: str) -> None:
    """Until the outbox reports the reply sent (it is delivered asynchronously)."""
    async with asyncio.timeout(30):
        while True:
            async with http.get(url, headers={"Authorization": f"Bearer {token}"}) as response:
                status = (await response.json())["status"]
            if status != "pending":
                return
            await asyncio.sleep(0.1)


def prepare_work_dir(work: Path) -> None:
    """A fresh directory each run, so the checks see only this run's data."""
    if work.exists():
        shutil.rmtree(work)
    (work / "staging").mkdir(parents=True)


async def run(work: Path, wait_seconds: float) -> bool:
    console = Console()
    prepare_work_dir(work)
    db, staging = work / "chatbot.sqlite3", work / "staging"
    print(f"demo: working directory {work} (SQLite store, staging, logs)")
    print("demo: making the conversation's media (espeak-ng speech, Pillow, PyAV, PDF, DOCX)")
    conversation = write_script(work / "script")
    gateway_token, api_token, node_token = (secrets.token_hex(16) for _ in range(3))

    await seed_definitions(db)
    services: list[Service] = []
    node_events: list[dict[str, Any]] = []
    try:
        queue = await start_service("services.queue_svc", queue_env(db), work / "queue_svc.log")
        services.append(queue)
        media_log = work / "media_svc.log"
        media = await start_service(
            "services.media_svc",
            media_env(
                db, staging, queue.address, MEDIA_LEASE_SECONDS="30", MEDIA_WARM_POOLS="true"
            ),
            media_log,
        )
        services.append(media)
        print("demo: media_svc is loading its engines (Whisper base, PP-OCR) once per worker")
        warm_started = time.monotonic()
        await wait_for_media_warm(media_log, 120)
        print(f"demo: engines ready in {time.monotonic() - warm_started:.1f} s")
        node_port = free_port()
        gateway = await start_service(
            "services.gateway",
            gateway_env(
                db,
                queue.address,
                f"http://127.0.0.1:{node_port}",
                node_ws_token=gateway_token,
                api_token=api_token,
                node_api_token=node_token,
            ),
            work / "gateway.log",
        )
        services.append(gateway)
        node = await start_node(
            {
                "GATEWAY_WS_URL": f"ws://{gateway.address}/ws",
                "GATEWAY_TOKEN": gateway_token,
                "NODE_API_TOKEN": node_token,
                "MEDIA_STAGING_DIR": str(staging),
                "OUTBOX_DIR": str(work / "node" / "outbox"),
                "POLL_STORE_DIR": str(work / "node" / "polls"),
                "SENT_KEYS_DIR": str(work / "node" / "sent_keys"),
                "AUTH_DIR": str(work / "node" / "auth"),
            },
            node_port,
            work / "node.log",
            conversation.script,
        )
        services.append(node)
        print(
            f"demo: queue_svc {queue.address}, media_svc {media.address}, "
            f"gateway {gateway.address}, Node 127.0.0.1:{node_port}"
        )
        started = time.monotonic()
        view = BotView(queue.address, started)
        connected = asyncio.Event()
        progress = MediaProgress(db, view, console)
        progress_stop = asyncio.Event()
        tasks = [
            asyncio.create_task(view.run(connected)),
            asyncio.create_task(follow_stdout(node, node_events)),
        ]
        await asyncio.wait_for(connected.wait(), 10)
        tasks.append(asyncio.create_task(progress.follow(progress_stop)))

        base = f"http://{gateway.address}"
        async with aiohttp.ClientSession() as http:
            for bot, quota in ((DEMO_BOT, 1.0), (FULL_BOT, 0.0)):
                await api(
                    http,
                    "PUT",
                    f"{base}/bots/{bot}/config",
                    api_token,
                    {"media_storage_quota_gb": quota, "languages": ["en", "es"]},
                )
                answer = await api(http, "POST", f"{base}/bots/{bot}/start", api_token, {})
                print(f"demo: started {bot} (quota {quota:g} GB): {answer['queue']}")
            complete = await view.wait_for(conversation.total, wait_seconds)
            progress_stop.set()
            await asyncio.sleep(0.5)
            first_text = next(r.message for r in view.received if r.message.bot_id == DEMO_BOT)
            photo = await asyncio.to_thread(
                (work / "script" / "media" / "opening-hours.jpg").read_bytes
            )
            replies: list[dict[str, Any]] = [
                {
                    "idempotency_key": "demo-thanks",
                    "correspondent_id": first_text.correspondent_id,
                    "text": f"Thanks, I got {len(view.received)} messages!",
                },
                {
                    "idempotency_key": "demo-photo",
                    "type": "image",
                    "correspondent_id": first_text.correspondent_id,
                    "text": "Our opening hours",
                    "media": {
                        "base64": base64.b64encode(photo).decode(),
                        "mime_type": "image/jpeg",
                    },
                },
            ]
            for reply in replies:
                accepted = await api(
                    http, "POST", f"{base}/bots/{DEMO_BOT}/messages", api_token, reply
                )
                await wait_sent(http, f"{base}{accepted['status_url']}", api_token)
            for bot in (DEMO_BOT, FULL_BOT):
                stopped = await api(http, "POST", f"{base}/bots/{bot}/stop", api_token, {})
                print(f"demo: stopped {bot}: {stopped}")
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.sleep(0.3)
        print_conversations(view)
        print_figures(view, progress, time.monotonic() - started)
        return await report(view, node_events, conversation, complete, db, staging, photo)
    finally:
        for service in reversed(services):
            await service.stop()


def print_conversations(view: BotView) -> None:
    print("demo: what the bot logic received (Subscribe), per correspondent")
    chats: dict[tuple[str, str], list[Received]] = defaultdict(list)
    for r in view.received:
        chats[(r.message.bot_id, r.message.correspondent_id)].append(r)
    for (bot, chat), messages in chats.items():
        phones = {r.message.message.context.correspondent_phone for r in messages} - {""}
        known = f" (LID; phone +{sorted(phones)[0]})" if chat.endswith("@lid") and phones else ""
        print(f"  ── {bot} ⇄ {chat.split('@')[0]}{known}")
        for r in sorted(messages, key=lambda item: item.message.message.id):
            m = r.message.message
            who = m.sender.split("@")[0]
            body = m.content.replace("\n", "\n" + " " * 26)
            print(f"    #{m.id:<3} +{r.at:5.1f}s {who:<13} {body}")


def print_figures(view: BotView, progress: MediaProgress, elapsed: float) -> None:
    per_kind: dict[str, list[float]] = defaultdict(list)
    for line in progress.lines.values():
        if line.done_at is not None:
            per_kind[line.kind].append(line.done_at - line.first_seen)
    print(
        f"demo: figures: {len(view.received)} messages in {elapsed:.1f} s; "
        f"{len(progress.lines)} media messages"
    )
    for kind, seconds in sorted(per_kind.items()):
        shown = ", ".join(f"{s:.1f}" for s in seconds)
        print(f"  {kind:<10} placeholder → text: {shown} s")


def _matches(content: str, expectation: Expectation) -> bool:
    if expectation.exact is not None:
        return content == expectation.exact
    lowered = content.lower()
    return all(word.lower() in lowered for word in expectation.words)


async def report(
    view: BotView,
    node_events: list[dict[str, Any]],
    conversation: Conversation,
    complete: bool,
    db: Path,
    staging: Path,
    photo: bytes,
) -> bool:
    print("demo: checks")
    checks = Checks()
    messages = [r.message for r in view.received]
    checks.check(
        complete and len(messages) == conversation.total,
        f"the bot logic received {len(messages)} of {conversation.total} messages",
    )
    keys = [(m.bot_id, m.correspondent_id, m.message.id) for m in messages]
    checks.check(len(keys) == len(set(keys)), "no message was delivered twice")
    checks.check(
        all(not m.message.HasField("media_processing_id") for m in messages),
        "no placeholder reached the bot logic",
    )
    # The Node server injects each bot's entries in script order: its events map every
    # entry to the WhatsApp id the bot's message carries.
    received = view.by_provider_id()
    for bot, expectations in conversation.expectations.items():
        injected = [
            e["id"]
            for e in node_events
            if e.get("event") == "message_injected" and e.get("botId") == bot
        ]
        for index, expectation in enumerate(expectations):
            got = received.get(injected[index]) if index < len(injected) else None
            content = got.message.message.content if got else "(nothing)"
            wanted = expectation.exact or " + ".join(expectation.words)
            checks.check(
                got is not None and _matches(content, expectation),
                f"{bot}: the {expectation.kind} reads as expected ({wanted[:60]})",
            )
            if expectation.check is not None:
                checks.check(
                    got is not None and expectation.check(got.message),
                    f"{bot}: the {expectation.kind}: {expectation.checks}",
                )
    voice = [
        r
        for r in view.received
        if r.message.message.media_kind == message_pb2.MEDIA_KIND_VOICE_NOTE
    ]
    after = [r for r in view.received if "right after the voice note" in r.message.message.content]
    checks.check(
        bool(voice and after) and after[0].at <= voice[0].at,
        "the text sent after the voice note was not held back by it",
    )
    replies = [e for e in node_events if e.get("event") == "reply_sent"]
    checks.check(
        [r.get("kind") for r in replies] == ["text", "image"],
        f"the bot's two replies (a text, then an image) reached WhatsApp once each: {replies}",
    )
    checks.check(
        any(r.get("sha256") == hashlib.sha256(photo).hexdigest() for r in replies),
        "the image reply carried the photo's exact bytes",
    )
    store = await open_store(StoreConfig(backend="sqlite", sqlite_path=db))
    try:
        persisted = 0
        for m in messages:
            history = await store.message_history(
                m.bot_id, m.provider_name, m.correspondent_id, limit=1000
            )
            persisted += sum(1 for h in history if h.id == m.message.id)
    finally:
        await store.close()
    checks.check(
        persisted == len(messages),
        f"{persisted} of {len(messages)} messages are persisted in `queues`",
    )
    leftovers = sorted(await asyncio.to_thread(os.listdir, staging))
    checks.check(not leftovers, f"the staging directory is empty ({leftovers})")
    print(f"demo: {'all checks passed' if checks.passed else 'SOME CHECKS FAILED'}")
    return checks.passed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", type=Path, default=REPO / "var" / "demo")
    parser.add_argument("--timeout", type=float, default=240.0)
    args = parser.parse_args()
    os.chdir(REPO)
    sys.exit(0 if asyncio.run(run(args.work_dir.resolve(), args.timeout)) else 1)


if __name__ == "__main__":
    main()
