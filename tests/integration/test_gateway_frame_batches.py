"""Frame batches on the Node socket (services/common/wire_batch.py) against the real
gateway and queue_svc: negotiated by a handshake header, several frames per WebSocket
message each answered by an ack of its own, and one peer's acks gathered into fewer
messages; a peer that does not offer batches keeps one frame per message."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from chatbot.wire.v1 import frames_pb2 as w

from services.common.wire import parse_gateway_frame
from services.common.wire_batch import BATCH_HEADER, BATCH_VERSION, join_frames, split_frames
from tests.helpers.clock import iso_now
from tests.helpers.node_api import fake_node_api
from tests.helpers.processes import Subscriber, gateway_env, queue_env, start_service

NODE_TOKEN = "node-secret"
API_TOKEN = "api-secret"
NODE_API_TOKEN = "node-api-secret"
BOT = "bot-batches"


@dataclass
class Gateway:
    address: str
    subscriber: Subscriber
    http: aiohttp.ClientSession

    def url(self, path: str) -> str:
        return f"http://{self.address}{path}"


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    db = tmp_path / "store.sqlite3"
    (tmp_path / "staging").mkdir()
    node_runner, node_url = await fake_node_api([], NODE_API_TOKEN)
    queue = await start_service("services.queue_svc", queue_env(db), tmp_path / "queue.log")
    env = gateway_env(
        db,
        queue.address,
        node_url,
        node_ws_token=NODE_TOKEN,
        api_token=API_TOKEN,
        node_api_token=NODE_API_TOKEN,
    )
    service = await start_service("services.gateway", env, tmp_path / "gateway.log")
    subscriber = Subscriber(queue.address, BOT)
    await subscriber.start()
    async with aiohttp.ClientSession() as http:
        auth = {"Authorization": f"Bearer {API_TOKEN}"}
        async with http.put(
            f"http://{service.address}/bots/{BOT}/config", json={}, headers=auth
        ) as response:
            assert response.status == 200, await response.text()
        async with http.post(
            f"http://{service.address}/bots/{BOT}/start", json={}, headers=auth
        ) as response:
            assert response.status == 200, await response.text()
        yield Gateway(service.address, subscriber, http)
    await subscriber.close()
    for process in (service, queue):
        assert await process.stop() == 0, f"{process.name} did not stop cleanly"
    await node_runner.cleanup()


def _text_frame(n: int, chat: int) -> tuple[str, str]:
    """(frame id, frame) of a text message with its own ids, as Node encodes it."""
    frame_id = f"f-batch-{n}"
    jid = f"49151{chat:08d}@s.whatsapp.net"
    frame = {
        "frameId": frame_id,
        "textMessage": {
            "header": {
                "botId": BOT,
                "correspondentId": jid,
                "sender": jid,
                "providerMessageId": f"WA-BATCH-{n}",
                "originatingTime": iso_now(),
            },
            # A newline inside a string is escaped in the JSON: it separates nothing.
            "message": f"message {n}\nsecond line",
        },
    }
    return frame_id, json.dumps(frame)


async def _acks(
    ws: aiohttp.ClientWebSocketResponse, count: int, *, batched: bool
) -> tuple[list[w.Ack], int]:
    """The next `count` acks, in arrival order, and how many messages held them."""
    acks: list[w.Ack] = []
    messages = 0
    while len(acks) < count:
        data = (await ws.receive(timeout=10)).data
        messages += 1
        for text in split_frames(data) if batched else [data]:
            frame = parse_gateway_frame(text)
            assert frame.WhichOneof("payload") == "ack", text
            acks.append(frame.ack)
    return acks, messages


async def test_a_batch_gets_one_ack_per_frame_and_the_acks_come_batched(
    gateway: Gateway,
) -> None:
    frames = [_text_frame(n, n % 3) for n in range(40)]
    bad_json = '{"frameId": "f-broken", "textMessage": '
    invalid = json.dumps({"frameId": "f-invalid", "textMessage": {"message": "no header"}})
    # A frame that is not text, between text frames: it is handled apart from them
    # (a task of its own) and still answered in the same batch stream.
    session = json.dumps(
        {
            "frameId": "f-session",
            "sessionEvent": {"botId": BOT, "state": "SESSION_STATE_CONNECTING", "time": iso_now()},
        }
    )
    offer = {"Authorization": f"Bearer {NODE_TOKEN}", BATCH_HEADER: BATCH_VERSION}
    async with gateway.http.ws_connect(gateway.url("/ws"), headers=offer) as ws:
        assert ws._response.headers.get(BATCH_HEADER) == BATCH_VERSION
        texts = [text for _, text in frames]
        batch = [*texts[:10], session, *texts[10:20], bad_json, *texts[20:], invalid]
        await ws.send_str(join_frames(batch))
        acks, messages = await _acks(ws, len(frames) + 3, batched=True)
        # The same frames again (as Node resends after a reconnect): all duplicates.
        await ws.send_str(join_frames(texts))
        again, _ = await _acks(ws, len(frames), batched=True)
    by_id = {ack.frame_id: ack for ack in acks}
    assert len(by_id) == len(acks) == len(frames) + 3
    assert by_id["f-session"].status == w.ACK_STATUS_ACCEPTED
    assert all(by_id[fid].status == w.ACK_STATUS_ACCEPTED for fid, _ in frames)
    assert by_id["f-broken"].status == w.ACK_STATUS_REJECTED
    assert "malformed" in by_id["f-broken"].reason
    assert by_id["f-invalid"].status == w.ACK_STATUS_REJECTED
    assert "header: required" in by_id["f-invalid"].reason
    # Frames decided together are acknowledged together.
    assert messages < len(acks)
    assert sorted(a.frame_id for a in again) == sorted(fid for fid, _ in frames)
    assert {a.status for a in again} == {w.ACK_STATUS_DUPLICATE}
    await gateway.subscriber.wait_for(len(frames), within=20)
    delivered = [m.message.provider_message_id for m in gateway.subscriber.messages]
    assert sorted(delivered) == sorted(f"WA-BATCH-{n}" for n in range(len(frames)))
    # Each chat's messages arrive in the order of the batch.
    for chat in range(3):
        jid = f"49151{chat:08d}@s.whatsapp.net"
        mine = [m for m in gateway.subscriber.messages if m.correspondent_id == jid]
        numbers = [int(m.message.provider_message_id.rsplit("-", 1)[1]) for m in mine]
        assert numbers == [n for n in range(len(frames)) if n % 3 == chat]


async def test_a_peer_that_offers_no_batches_keeps_one_frame_per_message(
    gateway: Gateway,
) -> None:
    (first_id, first), (second_id, second) = _text_frame(100, 0), _text_frame(101, 0)
    plain = {"Authorization": f"Bearer {NODE_TOKEN}"}
    async with gateway.http.ws_connect(gateway.url("/ws"), headers=plain) as ws:
        assert BATCH_HEADER not in ws._response.headers
        # Two frames on two lines are one broken frame to this connection.
        await ws.send_str(join_frames([first, second]))
        (refused,), _ = await _acks(ws, 1, batched=False)
        for text in (first, second):
            await ws.send_str(text)
        acks, messages = await _acks(ws, 2, batched=False)
    assert refused.status == w.ACK_STATUS_REJECTED
    assert "malformed" in refused.reason
    assert messages == 2
    assert {a.frame_id: a.status for a in acks} == {
        first_id: w.ACK_STATUS_ACCEPTED,
        second_id: w.ACK_STATUS_ACCEPTED,
    }
    await gateway.subscriber.wait_for(2, within=20)
    delivered = [m.message.provider_message_id for m in gateway.subscriber.messages]
    assert delivered == ["WA-BATCH-100", "WA-BATCH-101"]


async def test_frames_too_large_for_one_call_together_are_all_accepted(
    gateway: Gateway,
) -> None:
    # A text frame may be 256 KiB; queue_svc takes gRPC messages of up to 4 MiB. Frames
    # arriving while a call is in flight wait together: their batch must be cut by size,
    # or the whole call is refused and comes back refused on every resend.
    offer = {"Authorization": f"Bearer {NODE_TOKEN}", BATCH_HEADER: BATCH_VERSION}
    big = "x" * 250_000
    messages = []
    for part in range(3):
        frames = []
        for k in range(16):
            n = 1000 + part * 16 + k
            _, text = _text_frame(n, k % 3)
            frames.append(text.replace("second line", big))
        messages.append(join_frames(frames))
    async with gateway.http.ws_connect(gateway.url("/ws"), headers=offer) as ws:
        for message in messages:
            await ws.send_str(message)
        acks, _ = await _acks(ws, 48, batched=True)
    assert len({a.frame_id for a in acks}) == 48
    assert {a.status for a in acks} == {w.ACK_STATUS_ACCEPTED}, [a.reason for a in acks][:3]
