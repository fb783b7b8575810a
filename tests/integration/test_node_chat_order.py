"""One busy chat through the real Node server keeps its order while queue_svc goes down
and comes back: Node keeps several frames of a chat in flight (chatWindow), the gateway
answers RETRY to the chat's later frames once one got RETRY, and Node resends from the
oldest pending one. Every message reaches Subscribe exactly once, in the order sent."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp

from tests.helpers.delivery import ResumingSubscriber
from tests.helpers.node_server import start_node_server
from tests.helpers.processes import free_port, gateway_env, queue_env, start_service

BOT = "order-bot"
CHATS = ("4917000000001@s.whatsapp.net", "4917000000002@s.whatsapp.net")
MESSAGES = 600
AUTH = {"Authorization": "Bearer api"}


async def test_chat_order_survives_a_queue_svc_outage_with_frames_in_flight(
    tmp_path: Path,
) -> None:
    entries = [
        {"type": "text", "from": CHATS[n % 2], "id": f"ORD{n:05d}", "text": f"{n}", "delay_ms": 0}
        for n in range(MESSAGES)
    ]
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"bots": {BOT: entries}}))
    db = tmp_path / "store.sqlite3"
    queue_port, node_port = free_port(), free_port()
    queue = await start_service(
        "services.queue_svc", queue_env(db, port=queue_port), tmp_path / "queue.log"
    )
    gateway = await start_service(
        "services.gateway",
        gateway_env(
            db,
            queue.address,
            f"http://127.0.0.1:{node_port}",
            node_ws_token="ws",
            api_token="api",
            node_api_token="node-api-token",
        ),
        tmp_path / "gateway.log",
    )
    node = await start_node_server(
        tmp_path / "node",
        script,
        gateway_ws_url=f"ws://{gateway.address}/ws",
        gateway_token="ws",
        log_path=tmp_path / "node.log",
        port=node_port,
        # Short retry backoff: the test waits for the resends, not for the defaults.
        extra_env={"GATEWAY_RETRY_INITIAL_MS": "50", "GATEWAY_RETRY_MAX_MS": "200"},
    )
    subscriber = ResumingSubscriber([queue.address], [BOT])
    subscriber.start()
    try:
        api = f"http://{gateway.address}"
        async with aiohttp.ClientSession(headers=AUTH) as http:
            async with http.put(f"{api}/bots/{BOT}/config", json={}) as r:
                assert r.status == 200, await r.text()
            async with http.post(f"{api}/bots/{BOT}/start", json={}) as r:
                assert r.status == 200, await r.text()
        # Down while the chats are busy: frames in flight get RETRY or no answer.
        await subscriber.wait_for(BOT, MESSAGES // 4, within=60)
        await queue.kill()
        queue = await start_service(
            "services.queue_svc", queue_env(db, port=queue_port), tmp_path / "queue2.log"
        )
        # queue_svc resumes the bots of its registry by itself after a restart.
        await _wait_for_all(subscriber)
    finally:
        await subscriber.close()
        await node.stop()
        await gateway.stop()
        await queue.stop()
    ids = [m.message.provider_message_id for m in subscriber.messages]
    assert sorted(ids) == sorted(str(e["id"]) for e in entries), "each message exactly once"
    for chat in CHATS:
        sent = [int(m.message.content) for m in subscriber.messages if m.correspondent_id == chat]
        assert sent == sorted(sent), f"{chat} out of order"
    retried = node_log_retries(tmp_path / "node.log")
    assert retried > 0, "the outage never made the gateway answer RETRY: the test proved nothing"


async def _wait_for_all(subscriber: ResumingSubscriber, within: float = 120) -> None:
    async with asyncio.timeout(within):
        while len({m.message.provider_message_id for m in subscriber.messages}) < MESSAGES:
            subscriber.changed.clear()
            await subscriber.changed.wait()


def node_log_retries(log: Path) -> int:
    return sum(
        "retry later" in line or "no ack in time" in line
        for line in log.read_text(errors="replace").splitlines()
    )
