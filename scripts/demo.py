"""`make demo`: the whole pipeline on the embedded SQLite store, end to end.

Starts queue_svc, media_svc, the gateway and the Node server (real processes on
loopback), starts two bots through the gateway's lifecycle API, and lets the Node
server replay a scripted WhatsApp conversation (its socket is the only stand-in:
WhatsApp cannot be reached from here). Prints every message as the bot logic receives
it from the Subscribe stream, sends a bot reply back to WhatsApp, checks the outcome
and exits non-zero if any check fails.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import secrets
import shutil
import struct
import sys
import time
import wave
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import grpc
from chatbot.common.v1 import message_pb2
from chatbot.queue.v1 import queue_service_pb2 as q
from chatbot.queue.v1 import queue_service_pb2_grpc as q_grpc

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from services.common.routing import default_definitions  # noqa: E402
from services.common.store import StoreConfig, open_store  # noqa: E402
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
STUB_DELAY_SECONDS = 1.0


# --- media the scripted conversation sends (made here, nothing downloaded) ---------


def write_png(path: Path, width: int = 64, height: int = 48) -> None:
    """A real PNG (a colour gradient) written with the standard library only."""
    rows = b"".join(
        b"\x00" + bytes(v for x in range(width) for v in (x * 4 % 256, y * 5 % 256, 160))
        for y in range(height)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def write_wav(path: Path, seconds: float = 1.5, rate: int = 16_000) -> None:
    """A 440 Hz tone as 16-bit mono PCM."""
    frames = b"".join(
        struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / rate)))
        for i in range(int(seconds * rate))
    )
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(frames)


def write_pdf(path: Path, text: str) -> None:
    """A one-page PDF with one line of text and a correct cross-reference table."""
    stream = f"BT /F1 18 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    path.write_bytes(bytes(out))


def write_script(directory: Path) -> tuple[Path, int]:
    """The conversation, and how many messages the bot logic must receive from it."""
    media = directory / "media"
    media.mkdir(parents=True)
    write_png(media / "photo.png")
    write_wav(media / "tone.wav")
    write_pdf(media / "menu.pdf", "Tonight: soup, bread, apple pie")
    (media / "notes.txt").write_text("Shopping list:\n- eggs\n- flour\n- apples\n")
    (media / "archive.zip").write_bytes(b"PK\x05\x06" + b"\x00" * 18)
    bots: dict[str, list[dict[str, Any]]] = {}
    script: dict[str, Any] = {
        "comment": "make demo: a conversation replayed by the Node server's demo socket",
        "default_delay_ms": 150,
        "bots": bots,
    }
    bots.update(
        {
            DEMO_BOT: [
                {"from": ALICE, "type": "text", "text": "Hi! I'll send you a few things."},
                {"type": "image", "file": "media/photo.png", "caption": "my new wallpaper"},
                {"type": "text", "text": "This text comes right after the image."},
                {"type": "audio", "file": "media/tone.wav", "mimetype": "audio/wav"},
                {
                    "type": "document",
                    "file": "media/menu.pdf",
                    "mimetype": "application/pdf",
                    "filename": "menu.pdf",
                    "caption": "what do you think?",
                },
                {
                    "type": "document",
                    "file": "media/notes.txt",
                    "mimetype": "text/plain",
                    "filename": "notes.txt",
                },
                {
                    "type": "document",
                    "file": "media/archive.zip",
                    "mimetype": "application/zip",
                    "filename": "archive.zip",
                },
                {"type": "image", "file": "media/photo.png", "download_fails": True},
                {"type": "view_once_image", "file": "media/photo.png", "caption": "once!"},
                {"type": "ephemeral_text", "text": "a disappearing message"},
                {"type": "reaction", "text": "👍"},
                {
                    "group": FAMILY,
                    "group_name": "Family",
                    "from": BOB,
                    "type": "text",
                    "text": "Dinner at 8?",
                },
            ],
            FULL_BOT: [
                {"from": BOB, "type": "text", "text": "Here is a photo for you."},
                {"type": "image", "file": "media/photo.png", "caption": "sunset"},
            ],
        }
    )
    path = directory / "conversation.json"
    path.write_text(json.dumps(script, indent=2))
    # Every entry reaches the bot once (a reaction as "[Reaction 👍 to message …]").
    expected = sum(len(entries) for entries in bots.values())
    return path, expected


# --- what the bot logic sees ------------------------------------------------------


@dataclass
class Received:
    at: float
    message: message_pb2.AddressedMessage


@dataclass
class BotView:
    """Subscribes like the bot reply logic would, and prints what arrives."""

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
                now = time.monotonic() - self.started
                self.received.append(Received(now, response.message))
                self.changed.set()
                _print_message(now, response.message)

    async def wait_for(self, count: int, within: float) -> bool:
        try:
            async with asyncio.timeout(within):
                while len(self.received) < count:
                    self.changed.clear()
                    await self.changed.wait()
        except TimeoutError:
            return False
        return True


def _print_message(at: float, addressed: message_pb2.AddressedMessage) -> None:
    m = addressed.message
    where = addressed.correspondent_id.split("@")[0]
    if m.HasField("group"):
        where = f"{m.group.group_name or m.group.group_id} / {m.sender.split('@')[0]}"
    kind = message_pb2.MediaKind.Name(m.media_kind).removeprefix("MEDIA_KIND_").lower()
    label = "text" if kind == "unspecified" else kind
    body = m.content.replace("\n", "\n" + " " * 34)
    print(f"  +{at:6.2f}s  {addressed.bot_id:<17} #{m.id:<3} {label:<9} {where}: {body}")


async def seed_definitions(db: Path) -> None:
    """The built-in table, with the stubs taking as long as real processing might, so
    the demo shows that media never holds back the messages that follow it."""
    document = default_definitions().to_document()
    for pool in document["pools"]:
        if pool["processor"] == "stub":
            pool["options"]["delay_seconds"] = STUB_DELAY_SECONDS
    store = await open_store(StoreConfig(backend="sqlite", sqlite_path=db))
    try:
        await store.put_processor_definitions(document)
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


def prepare_work_dir(work: Path) -> None:
    """A fresh directory each run, so the checks see only this run's data."""
    if work.exists():
        shutil.rmtree(work)
    (work / "staging").mkdir(parents=True)


async def run(work: Path, wait_seconds: float) -> bool:
    prepare_work_dir(work)
    db, staging = work / "chatbot.sqlite3", work / "staging"
    script, expected = write_script(work / "script")
    gateway_token, api_token, node_token = (secrets.token_hex(16) for _ in range(3))
    print(f"demo: working directory {work} (SQLite store, staging, logs)")
    print("demo: media pools run the Phase-1 stub processors (a fixed marker after")
    print(f"      {STUB_DELAY_SECONDS:g} s): real image/audio/video/document processors are not")
    print("      built yet. Corrupt, unsupported and over-quota media use the real processors.")

    await seed_definitions(db)
    services: list[Service] = []
    node_events: list[dict[str, Any]] = []
    try:
        queue = await start_service("services.queue_svc", queue_env(db), work / "queue_svc.log")
        services.append(queue)
        media = await start_service(
            "services.media_svc",
            media_env(db, staging, queue.address, MEDIA_LEASE_SECONDS="10"),
            work / "media_svc.log",
        )
        services.append(media)
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
                "AUTH_DIR": str(work / "node" / "auth"),
            },
            node_port,
            work / "node.log",
            script,
        )
        services.append(node)
        print(
            f"demo: queue_svc {queue.address}, media_svc {media.address}, "
            f"gateway {gateway.address}, Node 127.0.0.1:{node_port}"
        )
        started = time.monotonic()
        view = BotView(queue.address, started)
        connected = asyncio.Event()
        tasks = [
            asyncio.create_task(view.run(connected)),
            asyncio.create_task(follow_stdout(node, node_events)),
        ]
        await asyncio.wait_for(connected.wait(), 10)

        base = f"http://{gateway.address}"
        async with aiohttp.ClientSession() as http:
            for bot, quota in ((DEMO_BOT, 1.0), (FULL_BOT, 0.0)):
                await api(
                    http,
                    "PUT",
                    f"{base}/bots/{bot}/config",
                    api_token,
                    {"media_storage_quota_gb": quota},
                )
                answer = await api(http, "POST", f"{base}/bots/{bot}/start", api_token, {})
                print(f"demo: started {bot} (quota {quota:g} GB): {answer['queue']}")
            print("demo: what the bot logic receives (Subscribe stream):")
            complete = await view.wait_for(expected, wait_seconds)
            first_text = next(r.message for r in view.received if r.message.bot_id == DEMO_BOT)
            await api(
                http,
                "POST",
                f"{base}/bots/{DEMO_BOT}/messages",
                api_token,
                {
                    "correspondent_id": first_text.correspondent_id,
                    "text": f"Thanks, I got {len(view.received)} messages!",
                },
            )
            for bot in (DEMO_BOT, FULL_BOT):
                stopped = await api(http, "POST", f"{base}/bots/{bot}/stop", api_token, {})
                print(f"demo: stopped {bot}: {stopped}")
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.sleep(0.3)
        return await report(view, node_events, expected, complete, db, staging)
    finally:
        for service in reversed(services):
            await service.stop()


async def report(
    view: BotView,
    node_events: list[dict[str, Any]],
    expected: int,
    complete: bool,
    db: Path,
    staging: Path,
) -> bool:
    print("demo: checks")
    checks = Checks()
    messages = [r.message for r in view.received]
    checks.check(
        complete and len(messages) == expected,
        f"the bot logic received {len(messages)} of {expected} messages",
    )
    keys = [(m.bot_id, m.correspondent_id, m.message.id) for m in messages]
    checks.check(len(keys) == len(set(keys)), "no message was delivered twice")
    checks.check(
        all(not m.message.HasField("media_processing_id") for m in messages),
        "no placeholder reached the bot logic",
    )
    by_text: Callable[[str], list[Received]] = lambda needle: [  # noqa: E731
        r for r in view.received if needle in r.message.message.content
    ]
    image, after = by_text("my new wallpaper"), by_text("right after the image")
    checks.check(
        bool(image and after) and after[0].at <= image[0].at,
        "the text sent after the image was not held back by it",
    )
    checks.check(bool(by_text("Corrupted")), "the failed download arrived as a corruption marker")
    checks.check(
        bool(by_text("Unsupported media: application/zip")),
        "the zip archive arrived as an unsupported-media marker",
    )
    checks.check(
        bool(by_text("media storage is full")),
        "the bot with a full staging quota got an over-quota marker",
    )
    replies = [e for e in node_events if e.get("event") == "reply_sent"]
    checks.check(len(replies) == 1, f"the bot's reply was sent to WhatsApp: {replies[:1]}")
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
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args()
    os.chdir(REPO)
    sys.exit(0 if asyncio.run(run(args.work_dir.resolve(), args.timeout)) else 1)


if __name__ == "__main__":
    main()
