"""A stand-in for the Node server's HTTP API, to see what the gateway's /initialize sends."""

from __future__ import annotations

from typing import Any

from aiohttp import web


async def fake_node_api(calls: list[dict[str, Any]], token: str) -> tuple[web.AppRunner, str]:
    """Serves POST /initialize on a loopback port, recording each body in `calls`;
    returns the runner (clean it up) and the base URL."""

    async def initialize(request: web.Request) -> web.Response:
        assert request.headers["Authorization"] == f"Bearer {token}"
        calls.append(await request.json())
        return web.json_response({"status": "initializing"})

    app = web.Application()
    app.router.add_post("/initialize", initialize)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"
