"""The Node server as a real subprocess in demo mode (a script replaces WhatsApp), with
the JSON lines its demo socket prints (`reply_sent`, `read_sent`, …) collected."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from tests.helpers.processes import REPO, Service


@dataclass
class NodeServer:
    service: Service
    events: list[dict[str, Any]] = field(default_factory=list)
    _reader: asyncio.Task[None] | None = None

    @property
    def address(self) -> str:
        return self.service.address

    def of(self, event: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("event") == event]

    async def stop(self) -> None:
        await self.service.stop()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader


async def start_node_server(
    env: Mapping[str, str], port: int, state: Path, script: Path, log_path: Path
) -> NodeServer:
    """Starts it with its state under `state`; returns once /healthz answers."""
    log = log_path.open("ab")
    process = await asyncio.create_subprocess_exec(
        "node",
        "whatsapp_baileys_server/src/index.js",
        cwd=REPO,
        env={
            **os.environ,
            "NODE_HOST": "127.0.0.1",
            "NODE_PORT": str(port),
            "NODE_DEMO_SCRIPT": str(script),
            "AUTH_DIR": str(state / "auth"),
            "OUTBOX_DIR": str(state / "outbox"),
            "POLL_STORE_DIR": str(state / "polls"),
            "SENT_IDS_DIR": str(state / "sent_ids"),
            "SENT_KEYS_DIR": str(state / "sent_keys"),
            "MEDIA_STAGING_DIR": str(state / "staging"),
            "LOG_LEVEL": "info",
            **env,
        },
        stdout=asyncio.subprocess.PIPE,
        stderr=log,
    )
    node = NodeServer(Service("whatsapp_baileys_server", process, f"127.0.0.1:{port}", log))

    async def read() -> None:
        assert process.stdout is not None
        async for raw in process.stdout:
            with contextlib.suppress(ValueError):
                node.events.append(json.loads(raw))

    node._reader = asyncio.create_task(read())
    async with aiohttp.ClientSession() as http:
        for _ in range(300):
            if process.returncode is not None:
                break
            try:
                async with http.get(f"http://{node.address}/healthz") as response:
                    if response.status == 200:
                        return node
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    await node.stop()
    raise RuntimeError(f"the Node server did not come up; see {log_path}")
