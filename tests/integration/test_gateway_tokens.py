"""Per-bot API tokens through the real gateway HTTP server (a subprocess, with a real
queue_svc and SQLite store): a token for bot A reads and steers A, and gets 403 on every
route of bot B and on every operator-only route; the operator token does everything."""

from __future__ import annotations

import inspect
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import aiohttp
import pytest

from services.gateway.api_auth import is_operator_only
from services.gateway.config import GatewayConfig
from services.gateway.http_app import GatewayApp
from tests.helpers.node_api import fake_node_api
from tests.helpers.processes import gateway_env, queue_env, start_service

API_TOKEN = "operator-secret"
BOT_A, BOT_B = "bot-a", "bot-b"
# Routes only the operator may call even for the bot of the token (the webhook and
# quota are the operator's decision; so are the bot's tokens). A route added later is
# open to its bot's tokens unless it is marked `operator_only`.
OPERATOR_ONLY = {
    ("PUT", "/bots/{bot_id}/config"),
    ("POST", "/bots/{bot_id}/tokens"),
    ("GET", "/bots/{bot_id}/tokens"),
    ("DELETE", "/bots/{bot_id}/tokens/{token_id}"),
}
BOT_ROUTES = {
    ("GET", "/bots/{bot_id}"),
    ("POST", "/bots/{bot_id}/start"),
    ("POST", "/bots/{bot_id}/stop"),
    ("POST", "/bots/{bot_id}/messages"),
}
UNAUTHENTICATED = {"/healthz", "/readyz", "/ws", "/openapi.json", "/docs", "/docs/{filename}"}


def _api_routes() -> dict[tuple[str, str], bool]:
    """Every route the gateway registers, and whether it is operator-only (read from the
    application it builds, so a route added later is checked here without editing this
    test); the collaborators are never called while the routes are only listed."""
    config = GatewayConfig(node_ws_token="n", api_token="a")
    names = inspect.signature(GatewayApp.__init__).parameters
    parts: dict[str, Any] = {n: cast(Any, None) for n in names if n not in ("self", "config")}
    app = GatewayApp(config=config, **parts).build()
    routes = {}
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("formatter") or info.get("path")
        methods = ("GET", "POST", "PUT", "DELETE", "PATCH")
        if route.method in methods and path and path not in UNAUTHENTICATED:
            routes[route.method, path] = is_operator_only(route.handler)
    return routes


def _fill(path: str, bot_id: str) -> str:
    path = path.replace("{bot_id}", bot_id)
    return re.sub(r"\{[a-z_]+\}", "0123456789abcdef", path)


@dataclass
class Gateway:
    url: str
    http: aiohttp.ClientSession

    async def call(
        self, method: str, path: str, token: str, body: dict[str, Any] | None = None
    ) -> tuple[int, dict[str, Any]]:
        headers = {"Authorization": f"Bearer {token}"}
        async with self.http.request(
            method, f"{self.url}{path}", json=body, headers=headers
        ) as response:
            payload = await response.json(content_type=None) if await response.read() else {}
            return response.status, payload

    async def issue(self, bot_id: str, label: str = "") -> dict[str, Any]:
        status, body = await self.call(
            "POST", f"/bots/{bot_id}/tokens", API_TOKEN, {"label": label}
        )
        assert status == 201, body
        return body


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    db = tmp_path / "store.sqlite3"
    calls: list[dict[str, Any]] = []
    node_runner, node_url = await fake_node_api(calls, "node-api")
    queue = await start_service("services.queue_svc", queue_env(db), tmp_path / "queue.log")
    service = await start_service(
        "services.gateway",
        gateway_env(
            db,
            queue.address,
            node_url,
            node_ws_token="node-ws",
            api_token=API_TOKEN,
            node_api_token="node-api",
        ),
        tmp_path / "gateway.log",
    )
    try:
        async with aiohttp.ClientSession() as http:
            gateway = Gateway(f"http://{service.address}", http)
            for bot in (BOT_A, BOT_B):
                status, body = await gateway.call(
                    "PUT", f"/bots/{bot}/config", API_TOKEN, {"media_storage_quota_gb": 1}
                )
                assert status == 200, body
            yield gateway
    finally:
        for process in (service, queue):
            assert await process.stop() == 0, f"{process.name} did not stop cleanly"
        await node_runner.cleanup()


async def test_a_bot_token_reads_and_steers_its_bot(gateway: Gateway) -> None:
    issued = await gateway.issue(BOT_A, "builder")
    token = issued["token"]
    assert issued["bot_id"] == BOT_A and issued["label"] == "builder"
    status, body = await gateway.call("GET", f"/bots/{BOT_A}", token)
    assert (status, body["bot_id"]) == (200, BOT_A)
    status, body = await gateway.call("POST", f"/bots/{BOT_A}/start", token, {})
    assert status == 200 and body["queue"]["started"] is True, body
    status, body = await gateway.call("POST", f"/bots/{BOT_A}/stop", token)
    assert status == 200 and body["stopped"] is True, body
    # Admitted (no Node is connected here, so the reply itself cannot go out).
    reply = {"correspondent_id": "491511@s.whatsapp.net", "text": "hi"}
    status, body = await gateway.call("POST", f"/bots/{BOT_A}/messages", token, reply)
    assert status not in (401, 403), (status, body)


async def test_a_bot_token_gets_403_on_every_route_of_another_bot_and_operator_routes(
    gateway: Gateway,
) -> None:
    token = (await gateway.issue(BOT_A))["token"]
    routes = _api_routes()
    assert {r for r, marked in routes.items() if marked} >= OPERATOR_ONLY
    assert not {r for r, marked in routes.items() if marked} & BOT_ROUTES
    for (method, path), marked in sorted(routes.items()):
        if path == "/console" or path.startswith("/console/"):
            # The console's pages take its signed session cookie, not a bearer token
            # (tests/integration/test_console.py checks a bot's session there).
            continue
        if path.startswith("/internal/"):
            # Node's own routes (its auth state, its leases): neither a bot token nor the
            # operator token opens them, only Node's credential.
            for wrong in (token, API_TOKEN):
                status, body = await gateway.call(method, _fill(path, BOT_A), wrong, {})
                assert status == 401, (method, path, status, body)
            continue
        status, body = await gateway.call(method, _fill(path, BOT_B), token, {})
        assert status == 403, (method, path, status, body)
        if marked:
            status, body = await gateway.call(method, _fill(path, BOT_A), token, {})
            assert status == 403, (method, path, status, body)
    # Nothing was changed through the refused calls: B has no token, A one.
    status, body = await gateway.call("GET", f"/bots/{BOT_B}/tokens", API_TOKEN)
    assert (status, body["tokens"]) == (200, [])
    status, body = await gateway.call("GET", f"/bots/{BOT_A}", API_TOKEN)
    assert body["config"]["media_storage_quota_gb"] == 1


async def test_the_operator_token_does_everything_and_revokes(gateway: Gateway) -> None:
    first, second = await gateway.issue(BOT_A, "one"), await gateway.issue(BOT_A, "two")
    assert first["token"] != second["token"]
    status, body = await gateway.call("GET", f"/bots/{BOT_A}/tokens", API_TOKEN)
    assert status == 200
    # Listed without the secrets; issued once. Two tokens issued in the same millisecond
    # are listed in token id order, so the order of these two is not the test's.
    assert sorted(t["label"] for t in body["tokens"]) == ["one", "two"]
    assert all("token" not in t for t in body["tokens"])
    status, body = await gateway.call(
        "DELETE", f"/bots/{BOT_A}/tokens/{first['token_id']}", API_TOKEN
    )
    assert (status, body["revoked"]) == (200, True)
    assert (await gateway.call("GET", f"/bots/{BOT_A}", first["token"]))[0] == 401
    assert (await gateway.call("GET", f"/bots/{BOT_A}", second["token"]))[0] == 200
    # Revoking through the wrong bot, or twice, finds nothing.
    path = f"/bots/{BOT_B}/tokens/{second['token_id']}"
    assert (await gateway.call("DELETE", path, API_TOKEN))[0] == 404
    path = f"/bots/{BOT_A}/tokens/{first['token_id']}"
    assert (await gateway.call("DELETE", path, API_TOKEN))[0] == 404


async def test_wrong_and_forged_tokens_get_401(gateway: Gateway) -> None:
    issued = await gateway.issue(BOT_A)
    forged = f"bot.{issued['token_id']}.{'x' * 43}"
    for token in ("", "operator", forged, f"bot.{'z' * 16}.abc", API_TOKEN + "x"):
        assert (await gateway.call("GET", f"/bots/{BOT_A}", token))[0] == 401, token
    assert (await gateway.call("POST", "/bots/no-such-bot/tokens", API_TOKEN, {}))[0] == 404
    status, _ = await gateway.call("POST", f"/bots/{BOT_A}/tokens", API_TOKEN, {"label": 5})
    assert status == 400
    status, body = await gateway.call("GET", f"/bots/{BOT_A}/tokens", API_TOKEN)
    assert len(body["tokens"]) == 1
