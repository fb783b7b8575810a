"""A stand-in for the Node server's HTTP API, to see what the gateway's /initialize sends
(and, for the bots given in `sessions`, to answer the pairing routes as Node does)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web


async def fake_node_api(
    calls: list[dict[str, Any]],
    token: str,
    sessions: Mapping[str, str] | None = None,
) -> tuple[web.AppRunner, str]:
    """Serves POST /initialize on a loopback port, recording each body in `calls`;
    `sessions` maps a bot id to its pending QR code's text: those bots have a session
    waiting for a scan (GET /sessions/{id}, its /qr, POST its /pairing-code), any other
    bot none (404, as Node answers). Returns the runner (clean it up) and the base URL."""
    waiting = dict(sessions or {})

    def authorized(request: web.Request) -> None:
        assert request.headers["Authorization"] == f"Bearer {token}"

    async def initialize(request: web.Request) -> web.Response:
        authorized(request)
        calls.append(await request.json())
        return web.json_response({"status": "initializing"})

    def session_of(request: web.Request) -> tuple[str, str]:
        authorized(request)
        user_id = request.match_info["user_id"]
        if user_id not in waiting:
            raise web.HTTPNotFound(
                text='{"error": "no session; POST /initialize first"}',
                content_type="application/json",
            )
        return user_id, waiting[user_id]

    async def status(request: web.Request) -> web.Response:
        user_id, _ = session_of(request)
        return web.json_response(
            {"userId": user_id, "state": "QR_REQUIRED", "qrAvailable": True, "detail": None}
        )

    async def qr(request: web.Request) -> web.Response:
        user_id, text = session_of(request)
        return web.json_response({"userId": user_id, "qr": text})

    async def pairing_code(request: web.Request) -> web.Response:
        user_id, _ = session_of(request)
        return web.json_response({"userId": user_id, "code": "ABCD1234"})

    app = web.Application()
    app.router.add_post("/initialize", initialize)
    app.router.add_get("/sessions/{user_id}", status)
    app.router.add_get("/sessions/{user_id}/qr", qr)
    app.router.add_post("/sessions/{user_id}/pairing-code", pairing_code)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"
