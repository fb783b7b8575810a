"""aiohttp against FastAPI on uvicorn (the `websockets` library, its sans-I/O implementation: the
classic one is deprecated) for the
two things the gateway serves: Node's WebSocket frames, each acknowledged (the text
path), and a small JSON POST validated and answered (the HTTP API). The same work on
both: a binary frame of 200 bytes answered with a 16-byte ack, a window of 64 frames in
flight on one connection; a POST of a 5-field JSON object parsed, checked and echoed,
16 concurrent requests. Server and client are separate processes (the client is this
script), on loopback, both on the plain asyncio loop; each framework is measured twice,
alternately, so a drift of the machine shows as a spread rather than as a winner.
Besides the rates, the server process's CPU time per frame and per request (from
/proc), which other load on the machine moves far less than the rates. Last line:
`RESULT aiohttp_frames_per_s=<x> aiohttp_frame_cpu_us=<x> aiohttp_posts_per_s=<x>
aiohttp_post_cpu_us=<x> fastapi_… (the same) frames_per_s_ratio=<x> frame_cpu_us_ratio=<x>
posts_per_s_ratio=<x> post_cpu_us_ratio=<x>` (ratio = FastAPI ÷ aiohttp; the best rate and
the least CPU of the two runs each).

    .venv/bin/python bench/http_frameworks.py [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Replace the script's own directory on the path: bench/queue.py would shadow the stdlib.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

import aiohttp  # noqa: E402
import uvicorn  # noqa: E402
from aiohttp import web  # noqa: E402
from fastapi import FastAPI, WebSocket, WebSocketDisconnect  # noqa: E402
from pydantic import BaseModel, ConfigDict  # noqa: E402

from tests.helpers.processes import free_port  # noqa: E402

FRAME = bytes(range(200))
ACK = b"ack:" + bytes(12)
WINDOW = 64
CONCURRENCY = 16
BODY = {
    "idempotency_key": "k-1",
    "type": "text",
    "correspondent_id": "4915112345678@s.whatsapp.net",
    "text": "hello " * 16,
    "quoted_provider_message_id": None,
}
FRAMEWORKS = ("aiohttp", "fastapi")


def _checked(body: Any) -> dict[str, Any]:
    """The aiohttp side's validation: the same rules the pydantic model states."""
    if not isinstance(body, dict) or set(body) - set(BODY):
        raise ValueError("unknown fields")
    for name in ("idempotency_key", "type", "correspondent_id", "text"):
        if not isinstance(body.get(name), str):
            raise ValueError(name)
    return body


def serve_aiohttp(port: int) -> None:
    async def ws(request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        async for message in socket:
            await socket.send_bytes(ACK)
            del message
        return socket

    async def post(request: web.Request) -> web.Response:
        try:
            body = _checked(await request.json())
        except ValueError as error:
            return web.json_response({"error": str(error)}, status=400)
        return web.json_response({"accepted": body["idempotency_key"]}, status=202)

    app = web.Application()
    app.router.add_get("/ws", ws)
    app.router.add_post("/post", post)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    idempotency_key: str
    type: str
    correspondent_id: str
    text: str
    quoted_provider_message_id: str | None = None


class Accepted(BaseModel):
    accepted: str


def serve_fastapi(port: int) -> None:
    # FastAPI reads the handlers' annotations from this module's globals.
    app = FastAPI()

    @app.websocket("/ws")
    async def ws(socket: WebSocket) -> None:
        await socket.accept()
        try:
            while True:
                await socket.receive_bytes()
                await socket.send_bytes(ACK)
        except WebSocketDisconnect:
            return

    @app.post("/post", status_code=202)
    async def post(body: Body) -> Accepted:
        return Accepted(accepted=body.idempotency_key)

    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        ws="websockets-sansio",
        # The C parser (httptools), as `uvicorn[standard]` installs: h11 would be slower.
        http="httptools",
        loop="asyncio",
        log_level="warning",
        access_log=False,
        lifespan="off",
    )


async def _started(framework: str) -> tuple[asyncio.subprocess.Process, int]:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--serve", framework, "--port", str(port)
    )
    deadline = time.monotonic() + 20
    async with aiohttp.ClientSession() as http:
        while True:
            try:
                async with http.get(f"http://127.0.0.1:{port}/none") as response:
                    await response.read()
                    return process, port
            except aiohttp.ClientConnectionError:
                if time.monotonic() > deadline:
                    process.kill()
                    raise RuntimeError(f"{framework} server did not start") from None
                await asyncio.sleep(0.05)  # polling a port that is not open yet


async def _frames(port: int, seconds: float) -> tuple[int, float]:
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(f"http://127.0.0.1:{port}/ws") as socket,
    ):
        for _ in range(WINDOW):
            await socket.send_bytes(FRAME)
        acked, start = 0, time.monotonic()
        while time.monotonic() - start < seconds:
            message = await socket.receive()
            assert message.data == ACK, message
            acked += 1
            await socket.send_bytes(FRAME)
        elapsed = time.monotonic() - start
        for _ in range(WINDOW):
            await socket.receive()
        return acked, elapsed


async def _posts(port: int, seconds: float) -> tuple[int, float]:
    url = f"http://127.0.0.1:{port}/post"
    count = 0
    async with aiohttp.ClientSession() as http:
        start = time.monotonic()

        async def one_client() -> None:
            nonlocal count
            while time.monotonic() - start < seconds:
                async with http.post(url, json=BODY) as response:
                    assert response.status == 202, await response.text()
                    await response.read()
                count += 1

        await asyncio.gather(*(one_client() for _ in range(CONCURRENCY)))
        return count, time.monotonic() - start


def _cpu_seconds(pid: int) -> float:
    """The server process's user + system CPU time (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Measured:
    per_s: float
    #: Server CPU microseconds per frame or request: unlike the rate, barely moved by
    #: other processes competing for the cores.
    cpu_us: float


async def _timed(pid: int, work: Callable[[], Awaitable[tuple[int, float]]]) -> Measured:
    cpu = _cpu_seconds(pid)
    count, elapsed = await work()
    return Measured(count / elapsed, (_cpu_seconds(pid) - cpu) * 1e6 / count)


async def _measure(framework: str, seconds: float) -> tuple[Measured, Measured]:
    process, port = await _started(framework)
    try:
        await _frames(port, 0.5)  # warm-up of both paths
        await _posts(port, 0.5)
        frames = await _timed(process.pid, lambda: _frames(port, seconds))
        posts = await _timed(process.pid, lambda: _posts(port, seconds))
        return frames, posts
    finally:
        process.terminate()
        await process.wait()


async def main(seconds: float) -> None:
    runs: dict[str, list[tuple[Measured, Measured]]] = {name: [] for name in FRAMEWORKS}
    for run in (1, 2):
        for framework in FRAMEWORKS:
            frames, posts = await _measure(framework, seconds)
            runs[framework].append((frames, posts))
            print(
                f"run {run} {framework}: {frames.per_s:.0f} frames/s"
                f" ({frames.cpu_us:.0f} us server CPU each), {posts.per_s:.0f} posts/s"
                f" ({posts.cpu_us:.0f} us each)"
            )
    # Best rate and least CPU of the two runs: the run less disturbed by the machine.
    figures: dict[str, float] = {}
    for name, measured in runs.items():
        figures[f"{name}_frames_per_s"] = max(f.per_s for f, _ in measured)
        figures[f"{name}_frame_cpu_us"] = min(f.cpu_us for f, _ in measured)
        figures[f"{name}_posts_per_s"] = max(p.per_s for _, p in measured)
        figures[f"{name}_post_cpu_us"] = min(p.cpu_us for _, p in measured)
    for what in ("frames_per_s", "frame_cpu_us", "posts_per_s", "post_cpu_us"):
        figures[f"{what}_ratio"] = figures[f"fastapi_{what}"] / figures[f"aiohttp_{what}"]
    print("RESULT " + " ".join(f"{k}={v:.2f}" for k, v in figures.items()))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--serve", choices=FRAMEWORKS)
    parser.add_argument("--port", type=int)
    args = parser.parse_args()
    if args.serve == "aiohttp":
        serve_aiohttp(args.port)
    elif args.serve == "fastapi":
        serve_fastapi(args.port)
    else:
        asyncio.run(main(args.seconds))
