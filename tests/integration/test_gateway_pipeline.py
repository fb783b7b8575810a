"""The gateway between a WebSocket peer acting as Node and real queue_svc/media_svc."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from chatbot.common.v1 import context_pb2
from chatbot.wire.v1 import frames_pb2 as w
from google.protobuf import json_format

from services.common.store import Store, StoreConfig, StoredMessage, open_store
from services.common.truncation import truncate_marked
from services.common.wire import encode_frame, parse_gateway_frame
from services.queue_svc.convert import message_proto
from services.queue_svc.messages import QueueLimits
from services.queue_svc.recovery import queued_message
from tests.helpers import secantus
from tests.helpers.clock import iso_now
from tests.helpers.fixtures import frame_text, load_fixtures
from tests.helpers.media_samples import require_espeak, voice_note
from tests.helpers.node_api import fake_node_api
from tests.helpers.processes import (
    Service,
    Subscriber,
    free_port,
    gateway_env,
    media_env,
    queue_env,
    start_service,
)
from tests.helpers.vision_inputs import text_image
from tests.helpers.waiting import wait_until

VALID = dict(load_fixtures("valid"))
INVALID = dict(load_fixtures("invalid"))
NODE_TOKEN = "node-secret"
API_TOKEN = "api-secret"
NODE_API_TOKEN = "node-api-secret"
BOT = "bot-1"
CHAT = "4915112345678@s.whatsapp.net"
PROVIDER = "whatsapp_baileys"
FOUR_FRAMES = (
    "text_message",
    "media_message_image",
    "corrupt_media_message",
    "quota_exceeded_media_message",
)


def _with_provider_id(name: str) -> str:
    """The fixture frame with a WhatsApp id of its own (the fixtures share one)."""
    frame = json.loads(frame_text(VALID[name]))
    payload = next(v for k, v in frame.items() if k != "frameId")
    payload["header"]["providerMessageId"] = f"WA-{name}"
    return json.dumps(frame)


@dataclass
class Pipeline:
    gateway: str
    queue: Service
    subscriber: Subscriber
    staging: Path
    initialize_calls: list[dict[str, Any]]
    http: aiohttp.ClientSession

    def api(self, path: str) -> str:
        return f"http://{self.gateway}{path}"

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {API_TOKEN}"}


@pytest.fixture
def store_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """The store of every service of the pipeline: SQLite (in `tmp_path`) unless
    PIPELINE_MONGODB_URI is set; then MongoDB there, in a database of this test's own.
    PIPELINE_MONGODB_URI=secantus starts an in-memory SecantusDB replica set for the test
    (package secantusdb, from `make venv`)."""
    uri = os.environ.get("PIPELINE_MONGODB_URI", "").strip()
    if not uri:
        yield {}
        return
    server: secantus.Server | None = None
    if uri == "secantus":
        server = secantus.start(tmp_path / "secantus", replica_set=True)
        uri = server.uri
    try:
        yield {
            "STORE_BACKEND": "mongodb",
            "MONGODB_URI": uri,
            "MONGODB_DATABASE": f"pipeline_{uuid.uuid4().hex[:12]}",
        }
    finally:
        if server is not None:
            server.stop()


@pytest.fixture
async def pipeline(tmp_path: Path, store_env: dict[str, str]) -> AsyncIterator[Pipeline]:
    db, staging = tmp_path / "store.sqlite3", tmp_path / "staging"
    staging.mkdir()
    calls: list[dict[str, Any]] = []
    node_runner, node_url = await fake_node_api(calls, NODE_API_TOKEN)
    queue = await start_service(
        "services.queue_svc", {**queue_env(db), **store_env}, tmp_path / "queue.log"
    )
    media = await start_service(
        "services.media_svc",
        {**media_env(db, staging, queue.address), **store_env},
        tmp_path / "media.log",
    )
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
            **store_env,
        },
        tmp_path / "gateway.log",
    )
    subscriber = Subscriber(queue.address, BOT)
    await subscriber.start()
    async with aiohttp.ClientSession() as http:
        yield Pipeline(gateway.address, queue, subscriber, staging, calls, http)
    await subscriber.close()
    for service in (gateway, media, queue):
        assert await service.stop() == 0, f"{service.name} did not stop cleanly"
    await node_runner.cleanup()
    # The services used the store chosen: on MongoDB no SQLite file was created.
    assert db.exists() == (not store_env)


async def _start_bot(p: Pipeline) -> dict[str, Any]:
    async with p.http.put(
        p.api(f"/bots/{BOT}/config"), json={"media_storage_quota_gb": 2.5}, headers=p.auth
    ) as response:
        assert response.status == 200, await response.text()
    async with p.http.post(p.api(f"/bots/{BOT}/start"), json={}, headers=p.auth) as response:
        assert response.status == 200, await response.text()
        body: dict[str, Any] = await response.json()
        return body


async def _exchange(ws: aiohttp.ClientWebSocketResponse, text: str) -> w.Ack:
    await ws.send_str(text)
    reply = parse_gateway_frame((await ws.receive(timeout=10)).data)
    assert reply.WhichOneof("payload") == "ack"
    return reply.ack


async def test_frames_become_messages_and_media_resolves(pipeline: Pipeline) -> None:
    started = await _start_bot(pipeline)
    assert started["queue"]["started"] is True
    assert pipeline.initialize_calls == [
        {
            "userId": BOT,
            "config": {
                "media_storage_quota_gb": 2.5,
                "provider_name": "whatsapp_baileys",
                # The message settings' documented defaults, which Node applies.
                "groups": True,
                "status": False,
                "newsletters": False,
                "owner_messages": True,
                "group_events": False,
                "read_receipts": False,
            },
            "forceReinit": False,
        }
    ]
    image = VALID["media_message_image"]
    (pipeline.staging / image["frame"]["mediaMessage"]["mediaProcessingId"]).write_bytes(b"jpg")
    headers = {"Authorization": f"Bearer {NODE_TOKEN}"}
    async with pipeline.http.ws_connect(pipeline.api("/ws"), headers=headers) as ws:
        for name in FOUR_FRAMES:
            ack = await _exchange(ws, _with_provider_id(name))
            expected = (VALID[name]["frame"]["frameId"], w.ACK_STATUS_ACCEPTED)
            assert (ack.frame_id, ack.status) == expected, ack.reason
        # A resent frame (Node lost the ack) changes nothing.
        again = await _exchange(ws, _with_provider_id("text_message"))
        assert again.status == w.ACK_STATUS_DUPLICATE
        bad = await _exchange(ws, frame_text(INVALID["missing_sender"]))
        assert bad.status == w.ACK_STATUS_REJECTED
        assert bad.frame_id == "f-0100"
        assert "text_message.header.sender: required" in bad.reason
    await pipeline.subscriber.wait_for(4, within=20)
    by_provider = {m.message.provider_message_id: m.message for m in pipeline.subscriber.messages}
    assert len(pipeline.subscriber.messages) == 4
    assert by_provider["WA-text_message"].content == "Hello, bot!"
    # Placeholders took their ids when the frames arrived, in frame order.
    ids = [by_provider[f"WA-{name}"].id for name in FOUR_FRAMES]
    assert ids == sorted(ids)
    media = [by_provider[f"WA-{name}"] for name in FOUR_FRAMES[1:]]
    assert all(not m.HasField("media_processing_id") for m in media)
    assert any(m.content.endswith("Caption: look at this") for m in media)
    assert any("Caption: party!" in m.content and "orrupt" in m.content for m in media)
    assert any("media storage is full" in m.content for m in media)
    # The worker deletes the file right after delivery, so it may still be there briefly.
    await wait_until(lambda: not list(pipeline.staging.iterdir()), within=10)


async def test_frames_for_an_inactive_bot_are_kept_for_later(pipeline: Pipeline) -> None:
    headers = {"Authorization": f"Bearer {NODE_TOKEN}"}
    async with pipeline.http.ws_connect(pipeline.api("/ws"), headers=headers) as ws:
        ack = await _exchange(ws, frame_text(VALID["text_message"]))
    assert ack.status == w.ACK_STATUS_RETRY
    assert f"POST /bots/{BOT}/start" in (ack.reason or "")
    assert pipeline.subscriber.messages == []


def _corrupt_media(n: int) -> tuple[str, str]:
    """(frame id, frame) of a corrupt media frame with its own frame and WhatsApp ids."""
    frame = json.loads(frame_text(VALID["corrupt_media_message"]))
    frame["frameId"] = f"f-burst-{n}"
    frame["corruptMediaMessage"]["header"]["providerMessageId"] = f"WA-burst-{n}"
    return frame["frameId"], json.dumps(frame)


async def _burst(ws: aiohttp.ClientWebSocketResponse, frames: list[str]) -> dict[str, w.Ack]:
    """Sends the frames without waiting (they reach the gateway together, and their
    placeholders go to queue_svc as one InjectPlaceholders call); their acks by frame id."""
    for text in frames:
        await ws.send_str(text)
    acks: dict[str, w.Ack] = {}
    while len(acks) < len(frames):
        reply = parse_gateway_frame((await ws.receive(timeout=10)).data)
        acks.setdefault(reply.ack.frame_id, reply.ack)
    return acks


async def test_media_frames_sent_together_each_get_their_own_ack(pipeline: Pipeline) -> None:
    headers = {"Authorization": f"Bearer {NODE_TOKEN}"}
    frames = [_corrupt_media(n) for n in range(4)]
    async with pipeline.http.ws_connect(pipeline.api("/ws"), headers=headers) as ws:
        # The bot is not active: every item of the batch is refused for that reason alone.
        acks = await _burst(ws, [text for _, text in frames])
        assert {a.status for a in acks.values()} == {w.ACK_STATUS_RETRY}
        assert all(f"POST /bots/{BOT}/start" in a.reason for a in acks.values())
        await _start_bot(pipeline)
        resend = frames[0][0], frames[0][1].replace("f-burst-0", "f-burst-0-again")
        acks = await _burst(ws, [text for _, text in [*frames, resend]])
    statuses = {fid: a.status for fid, a in acks.items()}
    assert sorted(statuses.values()) == sorted(
        [w.ACK_STATUS_ACCEPTED] * 4 + [w.ACK_STATUS_DUPLICATE]
    )
    assert {statuses["f-burst-0"], statuses["f-burst-0-again"]} == {
        w.ACK_STATUS_ACCEPTED,
        w.ACK_STATUS_DUPLICATE,
    }
    await pipeline.subscriber.wait_for(4, within=20)
    delivered = sorted(m.message.provider_message_id for m in pipeline.subscriber.messages)
    assert delivered == [f"WA-burst-{n}" for n in range(4)]


async def test_replies_are_stored_then_streamed_to_node_and_their_result_recorded(
    pipeline: Pipeline,
) -> None:
    await _start_bot(pipeline)
    headers = {"Authorization": f"Bearer {NODE_TOKEN}"}
    body = {"correspondent_id": "4915112345678@s.whatsapp.net", "text": "Thanks!"}
    reply_headers = {**pipeline.auth, "Idempotency-Key": "thanks-1"}
    # Accepted with no Node connected at all: the outbox keeps it.
    async with pipeline.http.post(
        pipeline.api(f"/bots/{BOT}/messages"), json=body, headers=reply_headers
    ) as response:
        assert response.status == 202, await response.text()
        accepted = await response.json()
    assert accepted["status"] == "pending"
    assert accepted["status_url"] == f"/bots/{BOT}/messages/thanks-1"
    async with pipeline.http.ws_connect(pipeline.api("/ws"), headers=headers) as ws:
        # The only connection serves every bot: the connect itself wakes the delivery.
        frame = parse_gateway_frame((await ws.receive(timeout=10)).data)
        out = frame.outgoing_message
        assert (out.text, out.idempotency_key) == ("Thanks!", "thanks-1")
        assert out.kind == w.OUTGOING_KIND_TEXT
        assert len(out.provider_message_id) == 22 and out.provider_message_id.startswith("3EB0")
        ack = w.NodeFrame(
            frame_id="n-ack", ack=w.Ack(frame_id=frame.frame_id, status=w.ACK_STATUS_ACCEPTED)
        )
        await ws.send_str(encode_frame(ack))
        result = w.NodeFrame(
            frame_id="n-result",
            outgoing_result=w.OutgoingResult(
                bot_id=BOT,
                idempotency_key="thanks-1",
                status=w.OUTGOING_STATUS_SENT,
                provider_message_id=out.provider_message_id,
            ),
        )
        assert (await _exchange(ws, encode_frame(result))).status == w.ACK_STATUS_ACCEPTED
        session = w.NodeFrame(
            frame_id="s-1",
            session_event=w.SessionEvent(bot_id=BOT, state=w.SESSION_STATE_OPEN),
        )
        session.session_event.time.GetCurrentTime()
        assert (await _exchange(ws, encode_frame(session))).status == w.ACK_STATUS_ACCEPTED
    status_url = pipeline.api(accepted["status_url"])
    async with pipeline.http.get(status_url, headers=pipeline.auth) as r:
        assert r.status == 200
        record = await r.json()
    assert record["status"] == "sent"
    assert record["provider_message_id"] == out.provider_message_id
    # The same key again: the stored record, no second message; another body: 409.
    async with pipeline.http.post(
        pipeline.api(f"/bots/{BOT}/messages"), json=body, headers=reply_headers
    ) as response:
        assert response.status == 200 and (await response.json())["status"] == "sent"
    async with pipeline.http.post(
        pipeline.api(f"/bots/{BOT}/messages"),
        json={**body, "text": "Something else"},
        headers=reply_headers,
    ) as response:
        assert response.status == 409
        assert "already used" in (await response.json())["error"]
    async with pipeline.http.get(pipeline.api(f"/bots/{BOT}"), headers=pipeline.auth) as r:
        status = await r.json()
    assert status["session"]["state"] == "SESSION_STATE_OPEN"


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "says"),
    [
        ("put", f"/bots/{BOT}/config", {"max_messages": -1}, 400, "max_messages"),
        ("put", f"/bots/{BOT}/config", {"bot_id": "other"}, 400, "differs"),
        ("put", f"/bots/{BOT}/config", {"group_events": "yes"}, 400, "group_events"),
        ("post", f"/bots/{BOT}/start", {}, 404, "PUT /bots/bot-1/config"),
        (
            "post",
            f"/bots/{BOT}/messages",
            {"correspondent_id": CHAT, "text": "x"},
            400,
            "idempotency key is required",
        ),
        ("post", f"/bots/{BOT}/messages", {"text": "x"}, 400, "correspondent_id: Field required"),
        (
            "post",
            f"/bots/{BOT}/messages",
            {"idempotency_key": "k", "text": "x"},
            400,
            "correspondent_id",
        ),
        (
            "post",
            f"/bots/{BOT}/messages",
            {"idempotency_key": "k", "correspondent_id": CHAT, "type": "image"},
            400,
            "needs media",
        ),
        (
            "post",
            f"/bots/{BOT}/messages",
            {"idempotency_key": "k", "correspondent_id": CHAT, "type": "read"},
            400,
            "target_message_id: required",
        ),
        (
            "post",
            f"/bots/{BOT}/messages",
            {"idempotency_key": "k", "correspondent_id": CHAT, "type": "typing", "media": {}},
            400,
            "takes no media",
        ),
        (
            "post",
            f"/bots/{BOT}/messages",
            {"idempotency_key": "k", "correspondent_id": CHAT, "text": "x"},
            404,
            "PUT /bots/bot-1/config",
        ),
    ],
)
async def test_bad_api_input_is_refused_and_changes_nothing(
    pipeline: Pipeline, method: str, path: str, body: dict[str, Any], status: int, says: str
) -> None:
    async with pipeline.http.request(
        method, pipeline.api(path), json=body, headers=pipeline.auth
    ) as response:
        assert response.status == status
        assert says in (await response.json())["error"]
    async with pipeline.http.get(pipeline.api(f"/bots/{BOT}"), headers=pipeline.auth) as r:
        assert r.status == 404


@pytest.mark.parametrize(
    ("media", "says"),
    [
        ({"url": "http://127.0.0.1:9/x.png"}, "refused"),
        ({"url": "http://169.254.169.254/latest/meta-data"}, "refused"),
        ({"url": "file:///etc/passwd"}, "only http"),
        ({"base64": "not base64!", "mime_type": "image/png"}, "not valid base64"),
        ({"base64": "AAAA"}, "mime_type is required"),
    ],
)
async def test_media_a_bot_may_not_send_is_refused_and_nothing_is_stored(
    pipeline: Pipeline, media: dict[str, str], says: str
) -> None:
    await _start_bot(pipeline)
    body = {"idempotency_key": "m-1", "correspondent_id": CHAT, "type": "image", "media": media}
    async with pipeline.http.post(
        pipeline.api(f"/bots/{BOT}/messages"), json=body, headers=pipeline.auth
    ) as response:
        assert response.status == 400
        assert says in (await response.json())["error"]
    async with pipeline.http.get(
        pipeline.api(f"/bots/{BOT}/messages/m-1"), headers=pipeline.auth
    ) as response:
        assert response.status == 404


async def test_unauthenticated_peers_are_refused(pipeline: Pipeline) -> None:
    async with pipeline.http.get(pipeline.api(f"/bots/{BOT}")) as response:
        assert response.status == 401
    with pytest.raises(aiohttp.WSServerHandshakeError):
        async with pipeline.http.ws_connect(
            pipeline.api("/ws"), headers={"Authorization": "Bearer wrong"}
        ):
            pass


async def test_frames_are_kept_for_later_while_queue_svc_is_down(tmp_path: Path) -> None:
    gateway = await start_service(
        "services.gateway",
        gateway_env(
            tmp_path / "store.sqlite3",
            f"127.0.0.1:{free_port()}",
            "http://127.0.0.1:9",
            node_ws_token=NODE_TOKEN,
            api_token=API_TOKEN,
            node_api_token="unused",
        ),
        tmp_path / "gateway.log",
    )
    try:
        async with aiohttp.ClientSession() as http:
            headers = {"Authorization": f"Bearer {NODE_TOKEN}"}
            async with http.ws_connect(f"http://{gateway.address}/ws", headers=headers) as ws:
                text = await _exchange(ws, frame_text(VALID["text_message"]))
                media = await _exchange(ws, frame_text(VALID["media_message_image"]))
    finally:
        assert await gateway.stop() == 0
    for ack in (text, media):
        assert ack.status == w.ACK_STATUS_RETRY
        assert "queue_svc UNAVAILABLE" in (ack.reason or "")


STRUCTURED = sorted(
    name for name, fixture in VALID.items() if "rendered" in fixture and "frame" in fixture
)


def _fresh_frame(name: str) -> str:
    """A golden frame addressed to this pipeline's bot, sent now."""
    frame = json.loads(frame_text(VALID[name]))
    payload = next(v for k, v in frame.items() if k != "frameId")
    payload["header"]["botId"] = BOT
    payload["header"]["originatingTime"] = iso_now()
    return json.dumps(frame)


async def test_every_structured_kind_reaches_the_bot_as_text_and_typed_fields(
    pipeline: Pipeline,
) -> None:
    assert len(STRUCTURED) >= 20
    await _start_bot(pipeline)
    headers = {"Authorization": f"Bearer {NODE_TOKEN}"}
    async with pipeline.http.ws_connect(pipeline.api("/ws"), headers=headers) as ws:
        for name in STRUCTURED:
            ack = await _exchange(ws, _fresh_frame(name))
            assert ack.status == w.ACK_STATUS_ACCEPTED, (name, ack.reason)
        # Dedup treats them like text: a resend is a duplicate and reaches nobody.
        again = await _exchange(ws, _fresh_frame(STRUCTURED[0]))
        assert again.status == w.ACK_STATUS_DUPLICATE
    await pipeline.subscriber.wait_for(len(STRUCTURED), within=20)
    assert len(pipeline.subscriber.messages) == len(STRUCTURED)
    received = {m.message.provider_message_id: m.message for m in pipeline.subscriber.messages}
    chats = set()
    for name in STRUCTURED:
        fixture = VALID[name]
        payload = next(v for k, v in fixture["frame"].items() if k != "frameId")
        chats.add(payload["header"]["correspondentId"])
        message = received[payload["header"]["providerMessageId"]]
        assert message.content == fixture["rendered"], name
        assert message.message_size == len(fixture["rendered"])
        typed = json_format.MessageToDict(message)
        # What the sender got wrong reaches the bot sanitized, as the fixture spells out
        # (coordinates recomputed, type names and control characters cleaned).
        assert typed.get("details") == fixture.get("typed_details", payload.get("details")), name
        assert typed.get("replyTo") == payload.get("replyTo"), name

    # What is persisted in `queues` carries the typed fields too (replay, recovery).
    store = await open_store(
        StoreConfig(backend="sqlite", sqlite_path=pipeline.staging.parent / "store.sqlite3")
    )
    try:
        async with asyncio.timeout(10):
            # Ingestion persists on its own schedule; poll the store until it has them all.
            while len(history := await _histories(store, chats)) < len(STRUCTURED):  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        assert len(history) == len(STRUCTURED)
        for stored in history:
            assert message_proto(queued_message(stored)) == received[stored.provider_message_id]
    finally:
        await store.close()


async def _histories(store: Store, chats: set[str]) -> list[StoredMessage]:
    found = []
    for chat in sorted(chats):
        found.extend(await store.message_history(BOT, PROVIDER, chat, 1000))
    return found


def _structured_frame(name: str, provider_id: str, **details: Any) -> str:
    """A golden structured frame for this pipeline's bot with its details replaced."""
    frame = json.loads(_fresh_frame(name))
    frame["structuredMessage"]["header"]["providerMessageId"] = provider_id
    frame["structuredMessage"]["details"] = details
    return json.dumps(frame)


async def test_typed_fields_reach_subscribe_under_the_rules_of_the_text(
    pipeline: Pipeline,
) -> None:
    """Issue 22: "NaN" coordinates are not passed on as valid, and an edit as long as the
    wire allows is cut exactly as its text is cut, in Edit.text too."""
    await _start_bot(pipeline)
    longest = "ja, " * 16_384  # 65,536 characters, the bound of Edit.text
    frames = [
        _structured_frame(
            "structured_location",
            "WA-nan",
            location={"latitude": "NaN", "longitude": "Infinity", "coordinatesValid": True},
        ),
        _structured_frame(
            "structured_edit",
            "WA-long-edit",
            edit={"targetMessageId": "3EB0ORIGINAL00000001", "text": longest, "decrypted": True},
        ),
    ]
    headers = {"Authorization": f"Bearer {NODE_TOKEN}"}
    async with pipeline.http.ws_connect(pipeline.api("/ws"), headers=headers) as ws:
        for frame in frames:
            ack = await _exchange(ws, frame)
            assert ack.status == w.ACK_STATUS_ACCEPTED, ack.reason
    await pipeline.subscriber.wait_for(2, within=20)
    received = {m.message.provider_message_id: m.message for m in pipeline.subscriber.messages}
    location = received["WA-nan"]
    assert location.content == "📍 (invalid coordinates)"
    assert location.details.location.coordinates_valid is False
    assert (location.details.location.latitude, location.details.location.longitude) == (0, 0)
    edit = received["WA-long-edit"]
    limit = QueueLimits().max_message_characters
    assert len(edit.content) == limit
    assert edit.content == truncate_marked(
        f"[Edited message 3EB0ORIGINAL00000001] {longest}", limit
    )
    assert edit.content == f"[Edited message 3EB0ORIGINAL00000001] {edit.details.edit.text}"
    assert edit.details.edit.text.endswith("more characters]")


async def test_media_that_replies_gets_the_reply_line_when_its_text_is_ready(
    pipeline: Pipeline,
) -> None:
    await _start_bot(pipeline)
    fixture = VALID["media_message_image_reply"]
    media = fixture["frame"]["mediaMessage"]
    # A real photo with words on it: the Image pool runs the real OCR processor.
    photo = text_image([((60, 300), "MEET AT THE STATION")], size=(800, 600))
    photo.save(pipeline.staging / media["mediaProcessingId"], format="JPEG")
    headers = {"Authorization": f"Bearer {NODE_TOKEN}"}
    async with pipeline.http.ws_connect(pipeline.api("/ws"), headers=headers) as ws:
        ack = await _exchange(ws, _fresh_frame("media_message_image_reply"))
        assert ack.status == w.ACK_STATUS_ACCEPTED, ack.reason
    await pipeline.subscriber.wait_for(1, within=90)
    [received] = [m.message for m in pipeline.subscriber.messages]
    assert received.content.startswith(fixture["reply_line"] + "\n[Image: JPEG 800\u00d7600]")
    assert "MEET AT THE STATION" in received.content.upper()
    assert received.content.endswith("Caption: this one?")
    assert json_format.MessageToDict(received.reply_to) == media["replyTo"]
    assert not received.HasField("details")


async def test_a_voice_note_frame_becomes_its_transcript_on_subscribe(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    """The product's reason to exist, end to end: a voice note frame in, the real
    transcript (Whisper base, in the Audio pool's own process) out of Subscribe. Fails,
    as the processor tests do, when espeak-ng is missing (`make apt` installs it)."""
    require_espeak()
    await _start_bot(pipeline)
    frame = json.loads(_fresh_frame("media_message_voice_note"))
    media = frame["mediaMessage"]
    note = voice_note(
        "Please send me the invoice for the garden party tomorrow morning.",
        "en",
        pipeline.staging / media["mediaProcessingId"],
    )
    media["fileSize"] = str(note.stat().st_size)
    headers = {"Authorization": f"Bearer {NODE_TOKEN}"}
    async with pipeline.http.ws_connect(pipeline.api("/ws"), headers=headers) as ws:
        ack = await _exchange(ws, json.dumps(frame))
        assert ack.status == w.ACK_STATUS_ACCEPTED, ack.reason
    await pipeline.subscriber.wait_for(1, within=120)
    [received] = [m.message for m in pipeline.subscriber.messages]
    text = received.content
    assert text.startswith("[Voice note, 0:0"), text
    assert ", English]" in text, text
    for word in ("invoice", "garden", "party", "tomorrow"):
        assert word in text.lower(), text
    assert not received.HasField("media_processing_id")
    # The language the text names, as a typed field with the detector's probability.
    assert received.media_result.language == "en", received.media_result
    assert 0.5 < received.media_result.language_probability <= 1, received.media_result


def _by_lid(pid: str, lid: str, phone: str | None) -> str:
    """The text fixture as Node sends a LID-addressed message (with the phone if known)."""
    frame = json.loads(_fresh_frame("text_message"))
    header = frame["textMessage"]["header"]
    header.update(correspondentId=lid, sender=lid, providerMessageId=pid)
    header["context"] = {"correspondentIdKind": "ID_KIND_LID", "senderIdKind": "ID_KIND_LID"}
    if phone is not None:
        header["context"]["correspondentPhone"] = phone
    return json.dumps(frame)


async def test_identity_mappings_and_message_context_reach_the_bot(pipeline: Pipeline) -> None:
    await _start_bot(pipeline)
    lid, digits = "98765432109876@lid", "4915112345678"
    headers = {"Authorization": f"Bearer {NODE_TOKEN}"}
    async with pipeline.http.ws_connect(pipeline.api("/ws"), headers=headers) as ws:
        # The person writes by phone JID first (CHAT), then Node's lid-mapping store
        # reports their LID, then they write by LID without the phone number.
        assert (await _exchange(ws, _with_provider_id("text_message"))).status == (
            w.ACK_STATUS_ACCEPTED
        )
        mappings = w.NodeFrame(
            frame_id="map-1",
            identity_mappings=w.IdentityMappings(
                bot_id=BOT, mappings=[w.IdentityMapping(lid=lid, phone_jid=CHAT)]
            ),
        )
        ack = await _exchange(ws, encode_frame(mappings))
        assert (ack.frame_id, ack.status) == ("map-1", w.ACK_STATUS_ACCEPTED), ack.reason
        # Resent (Node lost the ack): accepted again, and nothing new happens.
        assert (await _exchange(ws, encode_frame(mappings))).status == w.ACK_STATUS_ACCEPTED
        assert (await _exchange(ws, _by_lid("WA-lid-1", lid, None))).status == (
            w.ACK_STATUS_ACCEPTED
        )
        bad = w.NodeFrame(
            frame_id="map-2",
            identity_mappings=w.IdentityMappings(
                bot_id=BOT, mappings=[w.IdentityMapping(lid=CHAT, phone_jid=lid)]
            ),
        )
        refused = await _exchange(ws, encode_frame(bad))
        assert refused.status == w.ACK_STATUS_REJECTED and "lid must be" in (refused.reason or "")
    await pipeline.subscriber.wait_for(3, within=10)
    seen = [
        (a.correspondent_id, a.message.provider_message_id) for a in pipeline.subscriber.messages
    ]
    assert seen == [
        (CHAT, "WA-text_message"),
        (lid, f"identity-change:{CHAT}>{lid}"),
        (lid, "WA-lid-1"),
    ]
    last = pipeline.subscriber.messages[-1].message
    assert last.context.correspondent_phone == digits
    assert last.context.correspondent_id_kind == context_pb2.ID_KIND_LID
