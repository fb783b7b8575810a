"""The real Node server (whatsapp_baileys_server) as a subprocess in demo mode: the
Baileys socket is replaced by a script (NODE_DEMO_SCRIPT); sessions, the handler, the
outbox and the gateway link are the production ones. Its stdout is JSON lines
(`message_injected`, `reply_sent`, `qr_shown`, `paired` …), collected as events."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from tests.helpers.processes import free_port

REPO = Path(__file__).resolve().parents[2]


@dataclass
class NodeServer:
    process: asyncio.subprocess.Process
    url: str
    token: str
    gateway_ws_url: str
    events: list[dict[str, Any]] = field(default_factory=list)
    _reader: asyncio.Task[None] | None = None

    async def wait_event(
        self, matches: Callable[[dict[str, Any]], bool], within: float = 30
    ) -> dict[str, Any]:
        """The first event (seen so far or to come) that `matches`."""
        async with asyncio.timeout(within):
            while True:
                for event in self.events:
                    if matches(event):
                        return event
                if self.process.returncode is not None:
                    raise RuntimeError(f"the Node server exited with {self.process.returncode}")
                await asyncio.sleep(0.05)

    async def kill(self) -> None:
        """SIGKILL: no handover, no flush (a pod that dies)."""
        if self.process.returncode is None:
            self.process.kill()
        await self.process.wait()

    async def stop(self, within: float = 15) -> int:
        if self.process.returncode is None:
            self.process.terminate()
        try:
            code = await asyncio.wait_for(self.process.wait(), within)
        except TimeoutError:
            self.process.kill()
            code = await self.process.wait()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        return code


async def start_node_server(
    work: Path,
    script: Path,
    *,
    gateway_ws_url: str,
    gateway_token: str,
    log_path: Path,
    port: int | None = None,
    extra_env: dict[str, str] | None = None,
    node_args: list[str] | None = None,
) -> NodeServer:
    """Starts the Node server on loopback (`port`, or a free one); returns once /healthz
    answers. Pick the port first with free_port() when the gateway must know it."""
    port = port or free_port()
    token = "node-api-token"
    env = {
        **os.environ,
        "NODE_HOST": "127.0.0.1",
        "NODE_PORT": str(port),
        "NODE_API_TOKEN": token,
        "GATEWAY_WS_URL": gateway_ws_url,
        "GATEWAY_TOKEN": gateway_token,
        "AUTH_DIR": str(work / "auth"),
        "OUTBOX_DIR": str(work / "outbox"),
        "MEDIA_STAGING_DIR": str(work / "staging"),
        "POLL_STORE_DIR": str(work / "polls"),
        # Per server too: the defaults are under the repository's var/, where the keys a
        # run sent would make the next run's replies "already sent".
        "SENT_IDS_DIR": str(work / "sent_ids"),
        "SENT_KEYS_DIR": str(work / "sent_keys"),
        "UNDECRYPTABLE_DIR": str(work / "undecryptable"),
        "NODE_DEMO_SCRIPT": str(script),
        "LOG_LEVEL": "warn",
        **(extra_env or {}),
    }
    log = log_path.open("ab")
    process = await asyncio.create_subprocess_exec(
        "node",
        *(node_args or []),
        "whatsapp_baileys_server/src/index.js",
        cwd=REPO,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=log,
    )
    log.close()
    server = NodeServer(process, f"http://127.0.0.1:{port}", token, gateway_ws_url)
    server._reader = asyncio.create_task(_collect(process, server.events))
    async with aiohttp.ClientSession() as http:
        for _ in range(300):
            if process.returncode is not None:
                break
            try:
                async with http.get(f"{server.url}/healthz") as response:
                    if response.status == 200:
                        return server
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    await server.stop()
    raise RuntimeError(f"the Node server did not come up; see {log_path}")


async def _collect(process: asyncio.subprocess.Process, sink: list[dict[str, Any]]) -> None:
    assert process.stdout is not None
    async for raw in process.stdout:
        with contextlib.suppress(ValueError):
            sink.append(json.loads(raw))
