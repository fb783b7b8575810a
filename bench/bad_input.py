"""Bad input against the real gateway and queue_svc: the fuzzer's frame corpus
(tests/helpers/frame_corpus.py, fixed seed: valid frames mixed with mutations of nesting,
sizes, integer ranges, Unicode, duplicate keys, type confusion, unknown fields, broken
JSON) sent over one WebSocket, then path traversal and unauthenticated attempts.

Prints frames tried, acks by status, the most frequent rejection reasons, the slowest
batch of 100 frames, and how each hostile request was answered; the gateway must stay
up. Hostile media files (decompression bombs, hostile MIME types) are exercised by the
processors' unit tests (tests/unit/media_svc/test_image_processors.py,
test_processors.py); their markers, peak memory and times are not summarised here.
Last line: `RESULT frames=<n> accepted=<n> rejected=<n> other=<n> unanswered=<n>
hostile_refused=<n>/<n> gateway_alive=<0|1>`.

    .venv/bin/python bench/bad_input.py [--frames 1300]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

# Replace the script's own directory on the path: bench/queue.py would shadow the stdlib.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

import aiohttp  # noqa: E402
from chatbot.wire.v1 import frames_pb2 as w  # noqa: E402

from bench.harness import API_TOKEN, NODE_TOKEN, Stack, load_average, start_bots  # noqa: E402
from services.common.wire import parse_gateway_frame  # noqa: E402
from tests.helpers.clock import iso_now  # noqa: E402
from tests.helpers.frame_corpus import BOT, build_corpus  # noqa: E402
from tests.helpers.processes import free_port  # noqa: E402

KINDS = (
    "textMessage",
    "textMessage",
    "textMessage",
    "sessionEvent",
    "mediaMessage",
    "corruptMediaMessage",
    "quotaExceededMediaMessage",
)
BATCH = 100


def _reason_kind(reason: str) -> str:
    # "text_message.header.sender: required" -> "required"; keeps the table short.
    return reason.rsplit(": ", 1)[-1][:60] if reason else "(none)"


async def fuzz(ws: aiohttp.ClientWebSocketResponse, texts: list[str]) -> tuple[list[w.Ack], float]:
    acks: list[w.Ack] = []
    slowest = 0.0
    for start in range(0, len(texts), BATCH):
        batch = texts[start : start + BATCH]
        began = time.perf_counter()
        for text in batch:
            await ws.send_str(text)
        try:
            async with asyncio.timeout(30):
                for _ in batch:
                    message = await ws.receive()
                    if message.type != aiohttp.WSMsgType.TEXT:
                        return acks, slowest
                    acks.append(parse_gateway_frame(message.data).ack)
        except TimeoutError:
            return acks, slowest
        slowest = max(slowest, time.perf_counter() - began)
    return acks, slowest


def traversal_frame() -> str:
    header = {
        "botId": BOT,
        "correspondentId": "4915112345678@s.whatsapp.net",
        "sender": "4915112345678@s.whatsapp.net",
        "providerMessageId": "WA-TRAVERSAL",
        "originatingTime": iso_now(),
    }
    media = {
        "header": header,
        "message": "",
        "mediaProcessingId": "../../../../etc/passwd",
        "mimeType": "image/jpeg",
        "mediaKind": "MEDIA_KIND_IMAGE",
        "fileSize": "10",
    }
    return json.dumps({"frameId": "f-traversal", "mediaMessage": media})


async def hostile(http: aiohttp.ClientSession, base: str) -> list[tuple[str, str, bool]]:
    """(attempt, answer, refused) for each unauthenticated or traversal attempt."""
    results: list[tuple[str, str, bool]] = []
    for name, headers in (
        ("WebSocket without a token", {}),
        ("WebSocket with a wrong token", {"Authorization": "Bearer wrong"}),
        ("WebSocket with the API token", {"Authorization": f"Bearer {API_TOKEN}"}),
    ):
        try:
            async with http.ws_connect(f"{base}/ws", headers=headers):
                results.append((name, "connected", False))
        except aiohttp.WSServerHandshakeError as error:
            results.append((name, f"HTTP {error.status}", error.status in (401, 403)))
    api = [
        ("GET /bots/{id} without a token", "GET", f"/bots/{BOT}", {}),
        ("POST /bots/{id}/start with the Node token", "POST", f"/bots/{BOT}/start",
         {"Authorization": f"Bearer {NODE_TOKEN}"}),
        ("GET /bots/..%2F..%2Fetc%2Fpasswd", "GET", "/bots/..%2F..%2Fetc%2Fpasswd",
         {"Authorization": f"Bearer {API_TOKEN}"}),
        ("GET /bots/../../etc/passwd", "GET", "/bots/../../etc/passwd",
         {"Authorization": f"Bearer {API_TOKEN}"}),
    ]  # fmt: skip
    for name, method, path, headers in api:
        async with http.request(method, base + path, headers=headers) as response:
            await response.read()
            results.append((name, f"HTTP {response.status}", response.status >= 400))
    async with http.ws_connect(
        f"{base}/ws", headers={"Authorization": f"Bearer {NODE_TOKEN}"}
    ) as ws:
        await ws.send_str(traversal_frame())
        ack = parse_gateway_frame((await ws.receive(timeout=10)).data).ack
        answer = f"{w.AckStatus.Name(ack.status)} ({ack.reason})"
        results.append(("media frame with mediaProcessingId ../../../../etc/passwd", answer,
                        ack.status == w.ACK_STATUS_REJECTED))  # fmt: skip
    return results


async def run(count: int) -> None:
    print(f"load average before: {load_average()}")
    frames = build_corpus(count, KINDS)
    stack = Stack(Path(tempfile.mkdtemp(prefix="bench-bad-")), free_port())
    await stack.start("queue_svc")
    gateway = await stack.start("gateway")
    await start_bots(stack.queue_address, [BOT])
    base = f"http://{gateway.address}"
    try:
        async with aiohttp.ClientSession() as http:
            headers = {"Authorization": f"Bearer {NODE_TOKEN}"}
            async with http.ws_connect(f"{base}/ws", headers=headers) as ws:
                began = time.perf_counter()
                acks, slowest = await fuzz(ws, [f.text for f in frames])
                elapsed = time.perf_counter() - began
            attempts = await hostile(http, base)
        alive = all(s.process.returncode is None for s in stack.services.values())
    finally:
        await stack.stop_all()
    statuses = Counter(w.AckStatus.Name(a.status) for a in acks)
    mutations = Counter(f.mutation for f in frames)
    reasons = Counter(_reason_kind(a.reason) for a in acks if a.status == w.ACK_STATUS_REJECTED)
    print(f"corpus: {len(frames)} frames, {len(mutations)} kinds of mutation (and 'none')")
    print(f"acks: {dict(statuses)}; unanswered: {len(frames) - len(acks)}")
    slowest_ms = slowest * 1000
    print(f"sent and answered in {elapsed:.1f} s; slowest batch of {BATCH}: {slowest_ms:.0f} ms")
    print("most frequent rejection reasons:")
    for reason, n in reasons.most_common(8):
        print(f"  {n:5d}  {reason}")
    refused = sum(1 for _, _, ok in attempts if ok)
    for name, answer, ok in attempts:
        print(f"{'refused' if ok else 'NOT REFUSED'}: {name} -> {answer}")
    print(f"services still running after all of it: {alive}")
    print(f"load average after: {load_average()}")
    accepted = statuses["ACK_STATUS_ACCEPTED"] + statuses["ACK_STATUS_DUPLICATE"]
    rejected = statuses["ACK_STATUS_REJECTED"]
    print(
        f"RESULT frames={len(frames)} accepted={accepted} rejected={rejected}"
        f" other={len(acks) - accepted - rejected} unanswered={len(frames) - len(acks)}"
        f" hostile_refused={refused}/{len(attempts)} gateway_alive={int(alive)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--frames", type=int, default=1300)
    args = parser.parse_args()
    asyncio.run(run(args.frames))


if __name__ == "__main__":
    main()
