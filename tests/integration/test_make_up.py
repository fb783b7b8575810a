"""`make up` (scripts/up.py + Procfile under honcho), with the WhatsApp socket replaced
by a demo script as `make demo` does: a bot started through the API receives a message
on Subscribe, and SIGINT stops every process."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from pathlib import Path

import aiohttp
import grpc
from chatbot.queue.v1 import queue_service_pb2 as q
from chatbot.queue.v1 import queue_service_pb2_grpc as q_grpc

from tests.helpers.processes import free_port
from tests.helpers.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]
BOT = "up-bot"
CHAT = "4915100000042@s.whatsapp.net"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie has exited; only its parent has not reaped it yet.
    status = Path(f"/proc/{pid}/stat")
    return status.exists() and status.read_text().split()[2] != "Z"


async def test_make_up_serves_a_bot_and_stops_on_sigint(tmp_path: Path) -> None:
    script = tmp_path / "conversation.json"
    script.write_text(
        json.dumps({"bots": {BOT: [{"from": CHAT, "type": "text", "text": "hello from up"}]}})
    )
    ports = {name: str(free_port()) for name in ("QUEUE", "MEDIA", "GATEWAY", "NODE")}
    env = {
        **os.environ,
        "UP_DIR": str(tmp_path / "up"),
        "NODE_DEMO_SCRIPT": str(script),
        "QUEUE_SVC_PORT": ports["QUEUE"],
        "MEDIA_SVC_PORT": ports["MEDIA"],
        "GATEWAY_PORT": ports["GATEWAY"],
        "NODE_PORT": ports["NODE"],
        "QUEUE_SVC_METRICS_PORT": "0",
        "MEDIA_SVC_METRICS_PORT": "0",
        "GATEWAY_METRICS_PORT": "0",
        "RELAY_PORT": str(free_port()),
        "MEDIA_WARM_POOLS": "false",
        "PAIRING_POLL_SECONDS": "0.5",
    }
    output = tmp_path / "up.out"
    with output.open("wb") as sink:
        up = await asyncio.create_subprocess_exec(
            sys.executable, "scripts/up.py", cwd=REPO, env=env, stdout=sink, stderr=sink
        )
    try:
        secrets = (
            dict(
                line.split("=", 1)
                for line in (tmp_path / "up" / "secrets.env").read_text().splitlines()
            )
            if await _wait_for_file(tmp_path / "up" / "secrets.env")
            else {}
        )
        token = secrets["GATEWAY_API_TOKEN"]
        api = f"http://127.0.0.1:{ports['GATEWAY']}"
        auth = {"Authorization": f"Bearer {token}"}
        async with aiohttp.ClientSession() as http:
            await _wait_for_health(http, f"{api}/healthz", output)
            await _wait_for_health(http, f"http://127.0.0.1:{ports['NODE']}/healthz", output)
            async with grpc.aio.insecure_channel(f"127.0.0.1:{ports['QUEUE']}") as channel:
                stream = q_grpc.QueueServiceStub(channel).Subscribe(q.SubscribeRequest())
                await asyncio.wait_for(channel.channel_ready(), 30)
                async with http.put(f"{api}/bots/{BOT}/config", json={}, headers=auth) as r:
                    assert r.status == 200, await r.text()
                async with http.post(f"{api}/bots/{BOT}/start", json={}, headers=auth) as r:
                    assert r.status == 200, await r.text()
                response = await asyncio.wait_for(stream.read(), 60)
                assert isinstance(response, q.SubscribeResponse)
                assert response.message.bot_id == BOT
                assert response.message.correspondent_id == CHAT
                assert response.message.message.content == "hello from up"
                stream.cancel()
    finally:
        if up.returncode is None:
            up.send_signal(signal.SIGINT)
        code = await asyncio.wait_for(up.wait(), 60)
    text = output.read_text(errors="replace")
    assert code == 0, text[-3000:]
    pids = [int(pid) for pid in re.findall(r"started \(pid=(\d+)\)", text)]
    assert len(pids) == 6, text[-3000:]  # queue, media, gateway, node, relay, pairing
    # honcho has exited; its children are reaped a moment later.
    await wait_until(lambda: not [pid for pid in pids if _alive(pid)], within=10)
    assert "GATEWAY_API_TOKEN=" in text and f"127.0.0.1:{ports['GATEWAY']}" in text


async def _wait_for_file(path: Path, within: float = 30) -> bool:
    async with asyncio.timeout(within):
        while not await asyncio.to_thread(path.exists):  # noqa: ASYNC110 (only time to await)
            await asyncio.sleep(0.05)
    return True


async def _wait_for_health(http: aiohttp.ClientSession, url: str, output: Path) -> None:
    for _ in range(600):
        try:
            async with http.get(url) as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    log = await asyncio.to_thread(output.read_text)
    raise AssertionError(f"{url} did not come up:\n{log[-3000:]}")
