"""Pairing a bot through the gateway's API, with the real Node server whose WhatsApp
socket is the demo script's: the QR code (text and PNG, rotating like WhatsApp's), a
pairing code for a phone number, and the moment the session opens."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import cv2
import numpy as np
import pytest

from tests.helpers.node_server import NodeServer, start_node_server
from tests.helpers.processes import (
    Service,
    free_port,
    gateway_env,
    queue_env,
    start_service,
)

QR_BOT = "pair-qr"
CODE_BOT = "pair-code"
API_TOKEN = "api-token"
WS_TOKEN = "ws-token"
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
# The Node server a test started in place of the fixture's, by test directory.
NODE_NOW: dict[Path, NodeServer] = {}


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[tuple[str, NodeServer]]:
    async for api, node in _stack(tmp_path):
        yield api, node


async def _stack(tmp_path: Path) -> AsyncIterator[tuple[str, NodeServer]]:
    script = tmp_path / "script.json"
    script.write_text(
        json.dumps(
            {
                "bots": {
                    QR_BOT: [{"type": "text", "text": "hello after pairing"}],
                    CODE_BOT: [],
                },
                "pairing": {
                    # Rotates fast and is scanned late: the test sees several codes.
                    QR_BOT: {"rotate_ms": 150, "scan_after_ms": 4000},
                    CODE_BOT: {"rotate_ms": 1000, "scan_after_ms": 300, "by": "code"},
                },
            }
        )
    )
    db = tmp_path / "store.sqlite3"
    node_port = free_port()
    queue = await start_service("services.queue_svc", queue_env(db), tmp_path / "queue.log")
    services: list[Service] = [queue]
    node: NodeServer | None = None
    try:
        gateway = await start_service(
            "services.gateway",
            gateway_env(
                db,
                queue.address,
                f"http://127.0.0.1:{node_port}",
                node_ws_token=WS_TOKEN,
                api_token=API_TOKEN,
                node_api_token="node-api-token",
            ),
            tmp_path / "gateway.log",
        )
        services.append(gateway)
        node = await start_node_server(
            tmp_path / "node",
            script,
            gateway_ws_url=f"ws://{gateway.address}/ws",
            gateway_token=WS_TOKEN,
            log_path=tmp_path / "node.log",
            port=node_port,
        )
        yield f"http://{gateway.address}", node
        # A test may have replaced the Node server (same port); stop what runs now.
        node = NODE_NOW.pop(tmp_path, node)
    finally:
        if node is not None:
            await node.stop()
        for service in reversed(services):
            await service.stop()


async def _json(response: aiohttp.ClientResponse) -> Any:
    body = await response.json()
    assert response.status == 200, body
    return body


async def _start(http: aiohttp.ClientSession, api: str, bot: str) -> None:
    async with http.put(f"{api}/bots/{bot}/config", json={}, headers=AUTH) as r:
        await _json(r)
    async with http.post(f"{api}/bots/{bot}/start", json={}, headers=AUTH) as r:
        await _json(r)


async def _pairing_until(
    http: aiohttp.ClientSession, api: str, bot: str, done: Any, within: float = 30
) -> dict[str, Any]:
    async with asyncio.timeout(within):
        while True:
            async with http.get(f"{api}/bots/{bot}/pairing", headers=AUTH) as r:
                body: dict[str, Any] = await _json(r)
            if done(body):
                return body
            await asyncio.sleep(0.05)


def _decode_qr(png: bytes) -> str:
    image = cv2.imdecode(np.frombuffer(png, dtype=np.uint8), cv2.IMREAD_GRAYSCALE)
    assert image is not None, "the PNG does not decode"
    text, _points, _ = cv2.QRCodeDetector().detectAndDecode(image)
    return str(text)


async def test_a_bot_is_paired_by_scanning_the_qr_code_from_the_api(
    stack: tuple[str, NodeServer],
) -> None:
    api, node = stack
    async with aiohttp.ClientSession() as http:
        await _start(http, api, QR_BOT)
        first = await _pairing_until(http, api, QR_BOT, lambda b: b["qr"])
        assert first["state"] == "QR_REQUIRED"
        assert first["qr"].startswith("2@")
        # The PNG is the QR code of the same text (the code may rotate in between: then
        # it is one the demo socket showed).
        async with http.get(f"{api}{first['qr_png']}", headers=AUTH) as r:
            assert r.status == 200 and r.content_type == "image/png"
            assert r.headers["Cache-Control"] == "no-store"
            decoded = _decode_qr(await r.read())
        shown = {e["qr"] for e in node.events if e.get("event") == "qr_shown"}
        assert decoded in shown
        # WhatsApp rotates the code while nobody scans; the API follows it.
        seen = {first["qr"]}

        def rotated(body: dict[str, Any]) -> bool:
            if body["qr"]:
                seen.add(body["qr"])
            return len(seen) > 1 or body["state"] == "OPEN"

        await _pairing_until(http, api, QR_BOT, rotated)
        assert len(seen) > 1, "the QR code never changed before the scan"
        assert seen <= {e["qr"] for e in node.events if e.get("event") == "qr_shown"}
        opened = await _pairing_until(http, api, QR_BOT, lambda b: b["state"] == "OPEN")
        assert opened["qr"] is None
        async with http.get(f"{api}/bots/{QR_BOT}/pairing/qr.png", headers=AUTH) as r:
            assert r.status == 409, await r.text()
        async with http.get(f"{api}/bots/{QR_BOT}/session", headers=AUTH) as r:
            assert (await _json(r))["state"] == "OPEN"
    await node.wait_event(lambda e: e.get("event") == "paired" and e.get("botId") == QR_BOT)
    await node.wait_event(lambda e: e.get("event") == "message_injected" and e["botId"] == QR_BOT)


async def test_a_bot_is_paired_with_a_pairing_code_for_its_phone_number(
    stack: tuple[str, NodeServer],
) -> None:
    api, node = stack
    async with aiohttp.ClientSession() as http:
        await _start(http, api, CODE_BOT)
        await _pairing_until(http, api, CODE_BOT, lambda b: b["state"] == "QR_REQUIRED")
        for bad in ({"phone_number": "12"}, {"phone_number": 4915112345678}, {}):
            async with http.post(
                f"{api}/bots/{CODE_BOT}/pairing/code", json=bad, headers=AUTH
            ) as r:
                assert r.status == 400, (bad, await r.text())
        async with http.post(
            f"{api}/bots/{CODE_BOT}/pairing/code",
            json={"phone_number": "+49 151 12345678"},
            headers=AUTH,
        ) as r:
            code = (await _json(r))["code"]
        assert len(code) == 8
        requested = await node.wait_event(lambda e: e.get("event") == "pairing_code")
        assert requested["phoneNumber"] == "4915112345678" and requested["code"] == code
        await _pairing_until(http, api, CODE_BOT, lambda b: b["state"] == "OPEN")
        # Paired now: asking again is the operator's mistake, said clearly.
        async with http.post(
            f"{api}/bots/{CODE_BOT}/pairing/code",
            json={"phone_number": "4915112345678"},
            headers=AUTH,
        ) as r:
            assert r.status == 409, await r.text()


async def test_pairing_routes_need_the_api_token_and_a_known_bot(
    stack: tuple[str, NodeServer],
) -> None:
    api, _node = stack
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{api}/bots/{QR_BOT}/pairing") as r:
            assert r.status == 401
        async with http.get(f"{api}/bots/nobody/pairing", headers=AUTH) as r:
            assert r.status == 404, await r.text()


async def test_a_paired_session_moves_to_a_new_node_pod_without_pairing_again(
    stack: tuple[str, NodeServer], tmp_path: Path
) -> None:
    """The auth state is in the store, not on the pod: a Node server started with empty
    directories (a new pod, the old one's volume lost) resumes the session with no QR."""
    api, node = stack
    async with aiohttp.ClientSession() as http:
        await _start(http, api, QR_BOT)
        await _pairing_until(http, api, QR_BOT, lambda b: b["state"] == "OPEN")
    await node.stop()
    port = int(node.url.rsplit(":", 1)[1])
    fresh = tmp_path / "new-pod"
    assert not fresh.exists()
    new_node = await start_node_server(
        fresh,
        tmp_path / "script.json",
        gateway_ws_url=node.gateway_ws_url,
        gateway_token=WS_TOKEN,
        log_path=tmp_path / "node2.log",
        port=port,
    )
    NODE_NOW[tmp_path] = new_node
    async with aiohttp.ClientSession() as http:
        # The gateway starts the bot on the new pod (as it does for a moved bot).
        async with http.post(f"{api}/bots/{QR_BOT}/start", json={}, headers=AUTH) as r:
            await _json(r)
        await _pairing_until(http, api, QR_BOT, lambda b: b["state"] == "OPEN")
    await new_node.wait_event(lambda e: e.get("event") == "message_injected")
    assert not [e for e in new_node.events if e.get("event") in ("qr_shown", "paired")], (
        "the new pod asked for a new pairing"
    )
    pod_files = [p.name for p in (fresh / "auth").rglob("*") if p.is_file()]
    assert pod_files == ["session.json"], f"auth state files on the pod: {pod_files}"
