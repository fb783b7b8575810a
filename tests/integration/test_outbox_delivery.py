"""Replies through the durable outbox with the production shape of the gateway: two
gateway processes on one store, the Node server (demo mode) connected to the first. A
reply posted to either reaches WhatsApp (the demo socket) exactly once; a retried POST
never sends twice, also when the gateway holding Node restarts between accept and send;
media from a URL served by a real local HTTP server arrives with its exact bytes;
reactions, read receipts and typing reach the socket."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from aiohttp import web

from services.common.store import Store, StoreConfig, open_store
from services.gateway.outgoing_request import provider_message_id_for
from tests.helpers.node_server import NodeServer, start_node_server
from tests.helpers.processes import Service, free_port, gateway_env, queue_env, start_service
from tests.helpers.vision_inputs import text_image
from tests.helpers.waiting import eventually, wait_until

BOT = "outbox-bot"
ALICE = "4915100000077@s.whatsapp.net"
NODE_TOKEN = "node-ws-secret"
API_TOKEN = "api-secret"
#: What tests/helpers/node_server.py gives the Node server's API.
NODE_API_TOKEN = "node-api-token"
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


@dataclass
class Topology:
    tmp: Path
    db: Path
    queue: Service
    node: NodeServer
    gateways: list[Service]
    gateway0_port: int
    media_url: str
    photo: bytes
    http: aiohttp.ClientSession
    node_port: int = 0
    script: Path | None = None

    async def kill_node(self) -> None:
        await self.node.kill()
        await self.node.stop()

    async def start_node(self) -> None:
        """The same server again, on the same port and state directory."""
        assert self.script is not None
        self.node = await _start_node(self.tmp, self.script, self.gateway0_port, self.node_port)

    def api(self, gateway: int, path: str) -> str:
        return f"http://{self.gateways[gateway].address}{path}"

    async def start_gateway(self, index: int, port: int) -> Service:
        env = {
            **gateway_env(
                self.db,
                self.queue.address,
                self.node.url,
                node_ws_token=NODE_TOKEN,
                api_token=API_TOKEN,
                node_api_token=NODE_API_TOKEN,
            ),
            "GATEWAY_PORT": str(port),
            "GATEWAY_OUTBOX_SCAN_SECONDS": "0.2",
            # The local media server is on loopback: allowed for this test only.
            "OUTBOUND_ALLOW_HOSTS": "127.0.0.1",
        }
        return await start_service("services.gateway", env, self.tmp / f"gateway{index}.log")

    async def send(self, gateway: int, key: str, body: dict[str, Any]) -> tuple[int, Any]:
        headers = {**AUTH, "Idempotency-Key": key, "Content-Type": "application/json"}
        # A stream, not bytes: aiohttp warns about sending media-sized bodies in one piece.
        data = io.BytesIO(json.dumps({"correspondent_id": ALICE, **body}).encode())
        async with self.http.post(
            self.api(gateway, f"/bots/{BOT}/messages"), data=data, headers=headers
        ) as response:
            return response.status, await response.json()

    async def status(self, gateway: int, key: str) -> dict[str, Any]:
        async with self.http.get(
            self.api(gateway, f"/bots/{BOT}/messages/{quote(key, safe='')}"), headers=AUTH
        ) as response:
            assert response.status == 200, await response.text()
            body: dict[str, Any] = await response.json()
            return body

    async def wait_sent(self, gateway: int, key: str, within: float = 30) -> dict[str, Any]:
        async with asyncio.timeout(within):
            while True:
                record = await self.status(gateway, key)
                if record["status"] != "pending":
                    return record
                await asyncio.sleep(0.1)

    def events(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.node.events if e.get("event") == name]

    def sent_with_id(self, key: str) -> list[dict[str, Any]]:
        wanted = provider_message_id_for(BOT, key)
        return [e for e in self.events("reply_sent") if e["id"] == wanted]


async def _start_node(tmp: Path, script: Path, gateway_port: int, port: int) -> NodeServer:
    state = tmp / "node"
    return await start_node_server(
        state,
        script,
        gateway_ws_url=f"ws://127.0.0.1:{gateway_port}/ws",
        gateway_token=NODE_TOKEN,
        log_path=tmp / "node.log",
        port=port,
        # Per test: the keys a Node server already sent must not leak into another test.
        extra_env={
            "SENT_KEYS_DIR": str(state / "sent_keys"),
            "SENT_IDS_DIR": str(state / "sent_ids"),
            "LOG_LEVEL": "info",
        },
    )


async def _serve_media(photo: bytes) -> AsyncIterator[str]:
    async def image(request: web.Request) -> web.Response:
        return web.Response(body=photo, content_type="image/png")

    async def elsewhere(request: web.Request) -> web.Response:
        raise web.HTTPFound("http://localhost.invalid/photo.png")

    app = web.Application()
    app.router.add_get("/photo.png", image)
    app.router.add_get("/redirect.png", elsewhere)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


@pytest.fixture
async def topology(tmp_path: Path) -> AsyncIterator[Topology]:
    buffer = io.BytesIO()
    text_image([((20, 40), "OUTBOX")], size=(240, 120)).save(buffer, format="PNG")
    photo = buffer.getvalue()
    script = tmp_path / "script.json"
    script.write_text(
        json.dumps({"bots": {BOT: [{"from": ALICE, "type": "text", "text": "hello bot"}]}})
    )
    db = tmp_path / "store.sqlite3"
    queue = await start_service("services.queue_svc", queue_env(db), tmp_path / "queue.log")
    gateway0_port, node_port = free_port(), free_port()
    node = await _start_node(tmp_path, script, gateway0_port, node_port)
    media = _serve_media(photo)
    media_url = await anext(media)
    gateways: list[Service] = []
    async with aiohttp.ClientSession() as http:
        top = Topology(
            tmp_path,
            db,
            queue,
            node,
            gateways,
            gateway0_port,
            media_url,
            photo,
            http,
            node_port,
            script,
        )
        try:
            gateways.append(await top.start_gateway(0, gateway0_port))
            gateways.append(await top.start_gateway(1, 0))
            async with http.put(top.api(0, f"/bots/{BOT}/config"), json={}, headers=AUTH) as r:
                assert r.status == 200, await r.text()
            async with http.post(top.api(0, f"/bots/{BOT}/start"), json={}, headers=AUTH) as r:
                assert r.status == 200, await r.text()
            await node.wait_event(lambda e: e.get("event") == "message_injected")
            yield top
        finally:
            for gateway in gateways:
                await gateway.stop()
            await top.node.stop()
            await queue.stop()
            await anext(media, None)


async def test_a_reply_posted_to_either_gateway_reaches_whatsapp_once(topology: Topology) -> None:
    status0, accepted0 = await topology.send(0, "to-gw0", {"text": "from gateway 0"})
    status1, accepted1 = await topology.send(1, "to-gw1", {"text": "from gateway 1"})
    assert (status0, status1) == (202, 202), (accepted0, accepted1)
    assert accepted1["status"] == "pending"
    assert accepted1["status_url"] == f"/bots/{BOT}/messages/to-gw1"
    for key in ("to-gw0", "to-gw1"):
        # Either replica reads the status: it is in the shared store.
        record = await topology.wait_sent(1, key)
        assert record["status"] == "sent", record
        assert record["provider_message_id"] == provider_message_id_for(BOT, key)
        assert len(topology.sent_with_id(key)) == 1
    # Retries, to both replicas: the stored record, never a second message.
    for gateway in (0, 1, 1, 0):
        status, again = await topology.send(gateway, "to-gw1", {"text": "from gateway 1"})
        assert (status, again["status"]) == (200, "sent")
    status, conflict = await topology.send(1, "to-gw1", {"text": "another text"})
    assert status == 409 and "already used" in conflict["error"]
    # Any printable key, "/" included, and its status URL.
    status, slashed = await topology.send(1, "order/17 b", {"text": "slashed"})
    assert status == 202
    async with topology.http.get(topology.api(0, slashed["status_url"]), headers=AUTH) as r:
        assert r.status == 200 and (await r.json())["idempotency_key"] == "order/17 b"
    assert (await topology.wait_sent(0, "order/17 b"))["status"] == "sent"
    # Time for a wrong second send to show up (the scan runs every 0.2 s).
    await asyncio.sleep(1)
    replies = topology.events("reply_sent")
    assert [r["text"] for r in replies] == ["from gateway 0", "from gateway 1", "slashed"]
    assert {r["to"] for r in replies} == {ALICE}


async def test_a_send_accepted_while_the_node_gateway_is_down_is_delivered_once_after_restart(
    topology: Topology,
) -> None:
    await topology.gateways[0].stop()
    status, accepted = await topology.send(1, "while-down", {"text": "sent during a restart"})
    assert status == 202 and accepted["status"] == "pending"
    status, again = await topology.send(1, "while-down", {"text": "sent during a restart"})
    assert (status, again["status"]) == (200, "pending")
    await asyncio.sleep(0.5)
    assert topology.sent_with_id("while-down") == []
    topology.gateways[0] = await topology.start_gateway(0, topology.gateway0_port)
    record = await topology.wait_sent(1, "while-down", within=60)
    assert record["status"] == "sent"
    status, after = await topology.send(0, "while-down", {"text": "sent during a restart"})
    assert (status, after["status"]) == (200, "sent")
    await asyncio.sleep(1)
    assert len(topology.sent_with_id("while-down")) == 1


async def test_a_gateway_killed_right_after_accepting_sends_the_message_once(
    topology: Topology,
) -> None:
    # SIGKILL lands somewhere between accept, stream, send and record: wherever it lands,
    # the message goes out once (Node answers a key it already sent without posting).
    body = {"text": "killed right after"}
    status, _ = await topology.send(0, "killed", body)
    assert status == 202
    await topology.gateways[0].kill()
    topology.gateways[0] = await topology.start_gateway(0, topology.gateway0_port)
    # The 202 came after the store's commit: the retry finds the record.
    status, again = await topology.send(0, "killed", body)
    assert status == 200 and again["status"] in ("pending", "sent")
    assert (await topology.wait_sent(1, "killed", within=60))["status"] == "sent"
    await asyncio.sleep(1)
    assert len(topology.sent_with_id("killed")) == 1


async def test_an_image_from_a_url_arrives_with_its_exact_bytes(topology: Topology) -> None:
    body = {
        "type": "image",
        "text": "our sign",
        "media": {"url": f"{topology.media_url}/photo.png"},
    }
    status, accepted = await topology.send(1, "photo-1", body)
    assert status == 202, accepted
    assert (await topology.wait_sent(0, "photo-1"))["status"] == "sent"
    [sent] = topology.sent_with_id("photo-1")
    assert sent["kind"] == "image" and sent["mimetype"] == "image/png"
    assert sent["text"] == "our sign"
    assert sent["bytes"] == len(topology.photo)
    assert sent["sha256"] == hashlib.sha256(topology.photo).hexdigest()
    # A redirect to another host is refused, and nothing is stored.
    refused = {**body, "media": {"url": f"{topology.media_url}/redirect.png"}}
    status, error = await topology.send(1, "photo-2", refused)
    assert status == 400 and "another host" in error["error"]


async def test_inline_media_reactions_reads_and_typing_reach_the_socket(
    topology: Topology,
) -> None:
    target = topology.events("message_injected")[0]["id"]
    voice = b"OggS" + bytes(range(256)) * 4
    sends = {
        "voice": {
            "type": "voice_note",
            "media": {"base64": base64.b64encode(voice).decode(), "mime_type": "audio/ogg"},
        },
        "doc": {
            "type": "document",
            "text": "the menu",
            "media": {
                "base64": base64.b64encode(b"%PDF-1.4 demo").decode(),
                "mime_type": "application/pdf",
                "filename": "menu.pdf",
            },
        },
        "react": {"type": "reaction", "emoji": "\N{THUMBS UP SIGN}", "target_message_id": target},
        "quote": {"text": "answering you", "quoted_provider_message_id": target},
        "read": {"type": "read", "target_message_id": target},
        "typing": {"type": "typing"},
    }
    for key, body in sends.items():
        status, accepted = await topology.send(0, key, body)
        assert status == 202, (key, accepted)
    for key in sends:
        record = await topology.wait_sent(1, key)
        assert record["status"] == "sent", record
    [voice_sent] = topology.sent_with_id("voice")
    assert voice_sent["kind"] == "voice_note" and voice_sent["ptt"] is True
    assert voice_sent["sha256"] == hashlib.sha256(voice).hexdigest()
    assert voice_sent["mimetype"] == "audio/ogg; codecs=opus"
    [doc] = topology.sent_with_id("doc")
    assert (doc["kind"], doc["fileName"], doc["text"]) == ("document", "menu.pdf", "the menu")
    [reaction] = topology.sent_with_id("react")
    assert (reaction["kind"], reaction["emoji"], reaction["target"]) == (
        "reaction",
        "\N{THUMBS UP SIGN}",
        target,
    )
    [quote] = topology.sent_with_id("quote")
    assert quote["quoted"] == target
    assert [(e["chat"], e["id"]) for e in topology.events("read_sent")] == [(ALICE, target)]
    assert [(e["to"], e["presence"]) for e in topology.events("presence_sent")] == [
        (ALICE, "composing")
    ]


async def test_read_receipts_follow_the_bots_option_and_the_gateways_ack(
    topology: Topology,
) -> None:
    [before] = topology.events("message_injected")
    # The first message is acknowledged before the option changes: the gateway acks a
    # frame once queue_svc has it durable, so wait for it in the store (an ack still in
    # flight when Node learns the option would get a receipt, as any message acked then).
    store = await open_store(StoreConfig(backend="sqlite", sqlite_path=topology.db))
    try:
        await eventually(lambda: _stored(store), within=30)
    finally:
        await store.close()
    api = topology.api(1, f"/bots/{BOT}")
    async with topology.http.put(f"{api}/config", json={"read_receipts": "yes"}, headers=AUTH) as r:
        assert r.status == 400 and "read_receipts" in (await r.json())["error"]
    async with topology.http.put(f"{api}/config", json={"read_receipts": True}, headers=AUTH) as r:
        assert r.status == 200, await r.text()
    # A new socket replays the script: one more message, which reaches the bot's queue.
    async with topology.http.post(f"{api}/start", json={"forceReinit": True}, headers=AUTH) as r:
        assert r.status == 200, await r.text()
    await wait_until(lambda: len(topology.events("message_injected")) == 2, within=30)
    after = topology.events("message_injected")[1]
    await wait_until(lambda: bool(topology.events("read_sent")), within=30)
    # Read once the gateway acknowledged it; the message from before the option, never.
    assert [(e["chat"], e["id"]) for e in topology.events("read_sent")] == [(ALICE, after["id"])]
    assert before["id"] != after["id"]


async def _stored(store: Store) -> bool:
    return await store.max_sequence(BOT) >= 1


async def test_media_up_to_the_cap_crosses_to_node_and_beyond_it_is_refused(
    topology: Topology,
) -> None:
    # 12 MiB: far beyond the 256 KiB of Node's own frames; base64 in the request and in
    # the frame to Node (16 MiB, the default cap, as base64 is 21.3 MiB of the 32 MiB).
    video = hashlib.sha256(b"seed").digest() * (12 * 1024 * 1024 // 32)
    body = {
        "type": "video",
        "media": {"base64": base64.b64encode(video).decode(), "mime_type": "video/mp4"},
    }
    status, accepted = await topology.send(1, "big", body)
    assert status == 202, accepted
    assert (await topology.wait_sent(0, "big", within=60))["status"] == "sent"
    [sent] = topology.sent_with_id("big")
    assert (sent["kind"], sent["bytes"]) == ("video", len(video))
    assert sent["sha256"] == hashlib.sha256(video).hexdigest()
    over = b"x" * (16 * 1024 * 1024 + 1)
    too_big = {
        "type": "document",
        "media": {"base64": base64.b64encode(over).decode(), "mime_type": "application/pdf"},
    }
    status, error = await topology.send(1, "too-big", too_big)
    assert status == 400 and "cap" in error["error"]


async def test_sends_accepted_while_node_is_down_go_out_once_it_is_back(
    topology: Topology,
) -> None:
    status, _ = await topology.send(0, "before-kill", {"text": "before the kill"})
    assert status == 202
    await topology.kill_node()
    for gateway, key in ((0, "node-down-0"), (1, "node-down-1")):
        status, accepted = await topology.send(gateway, key, {"text": key})
        assert status == 202, accepted
    await asyncio.sleep(0.5)
    assert (await topology.status(1, "node-down-0"))["status"] == "pending"
    await topology.start_node()
    # The new process's events: whatever the killed one sent is not in this list.
    for key in ("node-down-0", "node-down-1"):
        assert (await topology.wait_sent(1, key, within=60))["status"] == "sent"
        assert len(topology.sent_with_id(key)) == 1
    record = await topology.wait_sent(0, "before-kill", within=60)
    assert record["status"] == "sent"
