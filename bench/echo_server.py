"""The baselines' far end: a raw grpc.aio unary echo (bytes in, the same bytes out, no
protobuf) and a raw aiohttp WebSocket echo, in one process of their own. Prints
`echo listening on <grpc host:port> <ws host:port>` and serves until SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

# The repository root, for the services' event-loop choice (the far end runs on the
# loop the services run on, so the baselines compare like with like).
sys.path[0] = str(Path(__file__).resolve().parent.parent)

import grpc  # noqa: E402
from aiohttp import WSMsgType, web  # noqa: E402

from services.common import event_loop  # noqa: E402

METHOD = "/bench.Echo/Echo"


async def _echo(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
    return request


async def _ws(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(max_msg_size=0)
    await ws.prepare(request)
    async for message in ws:
        if message.type == WSMsgType.TEXT:
            await ws.send_str(message.data)
    return ws


async def serve() -> None:
    server = grpc.aio.server()
    handler = grpc.method_handlers_generic_handler(
        "bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(_echo)}
    )
    server.add_generic_rpc_handlers((handler,))
    grpc_port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    app = web.Application()
    app.router.add_get("/ws", _ws)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    ws_port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(f"echo listening on 127.0.0.1:{grpc_port} 127.0.0.1:{ws_port}", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        await server.stop(None)


if __name__ == "__main__":
    event_loop.run(serve(), event_loop.event_loop_choice(os.environ))
