"""Fuzzing the Node WebSocket: generated frames, valid and hostile, against the real
gateway, queue_svc and SQLite store processes.

Every frame gets exactly one ack; every invalid one is REJECTED (with the frame id when it
could be read unambiguously); every valid text is in `queues` and on Subscribe exactly
once with its text intact (or visibly truncated); no process dies. The corpus comes
from tests/helpers/frame_corpus.py with a fixed seed, so CI sends the same frames.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
from chatbot.wire.v1 import frames_pb2 as w

from services.common.truncation import truncate_marked
from services.common.wire import FrameError, encode_frame, parse_gateway_frame, parse_node_frame
from services.queue_svc.messages import QueueLimits
from tests.helpers.frame_corpus import BOT, CorpusFrame, build_corpus
from tests.helpers.node_api import fake_node_api
from tests.helpers.processes import (
    Subscriber,
    gateway_env,
    queue_env,
    start_service,
)
from tests.helpers.waiting import wait_until

NODE_TOKEN = "node-secret"
API_TOKEN = "api-secret"
NODE_API_TOKEN = "node-api-secret"
BATCH = 100
SENTINEL_ID = "sentinel-frame"
SENTINEL_PROVIDER_ID = "WA-SENTINEL"
SENTINEL_TEXT = "the last frame"
KINDS = (
    "textMessage",
    "textMessage",
    "textMessage",
    "sessionEvent",
    "mediaMessage",
    "corruptMediaMessage",
    "quotaExceededMediaMessage",
)


def _printable(text: str) -> str:
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _expected_ack(frame: CorpusFrame) -> tuple[tuple[str, int], w.NodeFrame | None]:
    """(frame id, status) of the ack the contract demands, and the parsed frame if valid."""
    try:
        parsed = parse_node_frame(frame.text)
    except FrameError as error:
        return (_printable(error.frame_id), w.ACK_STATUS_REJECTED), None
    return (parsed.frame_id, w.ACK_STATUS_ACCEPTED), parsed


def _corpus() -> tuple[list[CorpusFrame], list[tuple[str, int]], dict[str, str]]:
    """The frames to send, their expected acks, and provider id → expected text."""
    frames, acks, texts = [], [], {}
    limit = QueueLimits().max_message_characters
    for frame in build_corpus(1300, KINDS):
        ack, parsed = _expected_ack(frame)
        if frame.expect is not None:
            assert (parsed is not None) is frame.expect, (frame.mutation, frame.text[:300])
        payload = parsed.WhichOneof("payload") if parsed is not None else None
        if payload in ("media_message", "corrupt_media_message", "quota_exceeded_media_message"):
            continue  # placeholders resolve only with media_svc; the differential test has them
        frames.append(frame)
        acks.append(ack)
        if parsed is not None and payload == "text_message":
            message = parsed.text_message
            texts[message.header.provider_message_id] = truncate_marked(message.message, limit)
    return frames, acks, texts


def _sentinel(frames: list[CorpusFrame]) -> str:
    """A valid text frame of the corpus's bot, with its own ids and text."""
    for frame in frames:
        try:
            parsed = parse_node_frame(frame.text)
        except FrameError:
            continue
        if parsed.WhichOneof("payload") == "text_message":
            parsed.frame_id = SENTINEL_ID
            parsed.text_message.header.provider_message_id = SENTINEL_PROVIDER_ID
            parsed.text_message.message = SENTINEL_TEXT
            return encode_frame(parsed)
    raise AssertionError("the corpus holds no valid text frame")


def _delivered(subscriber: Subscriber) -> set[str]:
    return {m.message.provider_message_id for m in subscriber.messages}


async def _receive_acks(ws: aiohttp.ClientWebSocketResponse, count: int) -> list[w.Ack]:
    acks: list[w.Ack] = []
    async with asyncio.timeout(30):
        while len(acks) < count:
            message = await ws.receive()
            assert message.type == aiohttp.WSMsgType.TEXT, f"socket closed: {message}"
            reply = parse_gateway_frame(message.data)
            assert reply.WhichOneof("payload") == "ack"
            acks.append(reply.ack)
    return acks


async def test_generated_frames_each_get_one_right_ack_and_valid_ones_arrive_once(
    tmp_path: Path,
) -> None:
    frames, expected_acks, texts = _corpus()
    sentinel = _sentinel(frames)
    texts[SENTINEL_PROVIDER_ID] = SENTINEL_TEXT
    assert len(frames) >= 1000
    kinds = Counter(status for _, status in expected_acks)
    assert kinds[w.ACK_STATUS_ACCEPTED] > 200 and kinds[w.ACK_STATUS_REJECTED] > 400, kinds

    db = tmp_path / "store.sqlite3"
    calls: list[dict[str, Any]] = []
    node_runner, node_url = await fake_node_api(calls, NODE_API_TOKEN)
    queue = await start_service("services.queue_svc", queue_env(db), tmp_path / "queue.log")
    gateway = await start_service(
        "services.gateway",
        gateway_env(
            db,
            queue.address,
            node_url,
            node_ws_token=NODE_TOKEN,
            api_token=API_TOKEN,
            node_api_token=NODE_API_TOKEN,
        ),
        tmp_path / "gateway.log",
    )
    subscriber = Subscriber(queue.address, BOT)
    try:
        await subscriber.start()
        api = f"http://{gateway.address}"
        auth = {"Authorization": f"Bearer {API_TOKEN}"}
        async with aiohttp.ClientSession() as http:
            async with http.put(f"{api}/bots/{BOT}/config", json={}, headers=auth) as response:
                assert response.status == 200, await response.text()
            async with http.post(f"{api}/bots/{BOT}/start", json={}, headers=auth) as response:
                assert response.status == 200, await response.text()
            headers = {"Authorization": f"Bearer {NODE_TOKEN}"}
            received: list[w.Ack] = []
            async with http.ws_connect(f"{api}/ws", headers=headers) as ws:
                for start in range(0, len(frames), BATCH):
                    batch = frames[start : start + BATCH]
                    for frame in batch:
                        await ws.send_str(frame.text)
                    received.extend(await _receive_acks(ws, len(batch)))
                # Far beyond the frame limit, yet read and answered: the socket stays up.
                huge = '{"frameId":"huge","ack":{"frameId":"' + "h" * (1 << 20) + '"}}'
                await ws.send_str(huge)
                (answer,) = await _receive_acks(ws, 1)
                assert answer.status == w.ACK_STATUS_REJECTED
                assert "more than the 262144 allowed" in answer.reason
                # Exactly one ack each: the next thing on the socket is the ack of a
                # last frame sent after all of them (a barrier, not a pause).
                await ws.send_str(sentinel)
                (after,) = await _receive_acks(ws, 1)
                assert (after.frame_id, after.status) == (SENTINEL_ID, w.ACK_STATUS_ACCEPTED), (
                    f"an ack too many: {after}"
                )
                assert not ws.closed

        got = Counter((ack.frame_id, ack.status) for ack in received)
        assert got == Counter(expected_acks)

        # The sentinel was added after every other frame was acknowledged, so anything
        # emitted twice is on the stream before it.
        await wait_until(lambda: SENTINEL_PROVIDER_ID in _delivered(subscriber), within=30)
        delivered = Counter(m.message.provider_message_id for m in subscriber.messages)
        assert delivered == Counter(texts.keys())
        for message in subscriber.messages:
            assert message.message.content == texts[message.message.provider_message_id]

        def persisted() -> list[tuple[str, str]]:
            with sqlite3.connect(db) as conn:
                found: list[tuple[str, str]] = conn.execute(
                    "SELECT provider_message_id, content FROM queues WHERE bot_id = ?", (BOT,)
                ).fetchall()
            return found

        # Persistence is write-behind.
        await wait_until(lambda: len(persisted()) >= len(texts), within=20, every=0.2)
        rows = persisted()
        assert Counter(pid for pid, _ in rows) == Counter(texts.keys())
        assert all(content == texts[pid] for pid, content in rows)
        assert queue.process.returncode is None and gateway.process.returncode is None
    finally:
        await subscriber.close()
        codes = [await service.stop() for service in (gateway, queue)]
        await node_runner.cleanup()
    assert codes == [0, 0], "a service did not stop cleanly"
