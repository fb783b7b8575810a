"""Two Node servers share the bots by lease (NODE_OWNERSHIP=lease): each bot's session
runs on exactly one of them, the gateway reaches it there, and when one server is
SIGKILLed its bots open on the other within a bounded time, with no new pairing (the
auth state is in the store) and no message lost or delivered twice."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import aiohttp

from services.common.store import StoreConfig, open_store
from services.gateway.node_directory import rendezvous_owner
from tests.helpers.delivery import ResumingSubscriber
from tests.helpers.node_server import NodeServer, start_node_server
from tests.helpers.processes import free_port, gateway_env, queue_env, start_service
from tests.helpers.waiting import wait_until

BOTS = [f"shard-bot-{n}" for n in range(6)]
REPLICAS = ("node-a", "node-b")
TTL_SECONDS = 3
AUTH = {"Authorization": "Bearer api"}


def _script(path: Path) -> None:
    bots = {
        bot: [
            {"type": "text", "from": "4917000000001@s.whatsapp.net", "id": f"{bot}-m{i}",
             "text": f"{bot} message {i}", "delay_ms": 0}
            for i in range(3)
        ]
        for bot in BOTS
    }  # fmt: skip
    path.write_text(json.dumps({"bots": bots}))


def _bots_on(node: NodeServer) -> set[str]:
    return {e["botId"] for e in node.events if e.get("event") == "message_injected"}


async def test_bots_are_shared_and_move_when_a_node_server_dies(tmp_path: Path) -> None:
    script = tmp_path / "script.json"
    _script(script)
    db = tmp_path / "store.sqlite3"
    queue = await start_service("services.queue_svc", queue_env(db), tmp_path / "queue.log")
    gateway = await start_service(
        "services.gateway",
        gateway_env(
            db,
            queue.address,
            "http://127.0.0.1:9",  # never used: the replicas announce themselves
            node_ws_token="ws",
            api_token="api",
            node_api_token="node-api-token",
        ),
        tmp_path / "gateway.log",
    )
    nodes: dict[str, NodeServer] = {}
    subscriber = ResumingSubscriber([queue.address], BOTS)
    subscriber.start()
    try:
        for replica in REPLICAS:
            port = free_port()
            nodes[replica] = await start_node_server(
                tmp_path / replica,
                script,
                gateway_ws_url=f"ws://{gateway.address}/ws",
                gateway_token="ws",
                log_path=tmp_path / f"{replica}.log",
                port=port,
                extra_env={
                    "NODE_OWNERSHIP": "lease",
                    "NODE_REPLICA_ID": replica,
                    "NODE_ADVERTISED_URL": f"http://127.0.0.1:{port}",
                    "NODE_LEASE_TTL_SECONDS": str(TTL_SECONDS),
                },
            )
        api = f"http://{gateway.address}"
        async with aiohttp.ClientSession(headers=AUTH) as http:
            # Both replicas are members before the first bot starts.
            store = await open_store(StoreConfig(backend="sqlite", sqlite_path=db))
            try:
                async with asyncio.timeout(15):
                    members = store.lease_holders("node-member:")
                    while len(await members) < len(REPLICAS):
                        await asyncio.sleep(0.1)
                        members = store.lease_holders("node-member:")
            finally:
                await store.close()
            for bot in BOTS:
                async with http.put(f"{api}/bots/{bot}/config", json={}) as r:
                    assert r.status == 200, await r.text()
                async with http.post(f"{api}/bots/{bot}/start", json={}) as r:
                    assert r.status == 200, await r.text()
            await wait_until(lambda: _received(subscriber) == 3 * len(BOTS), within=60)
            placed = {replica: _bots_on(node) for replica, node in nodes.items()}
            assert placed["node-a"].isdisjoint(placed["node-b"]), "one bot on two replicas"
            assert placed["node-a"] | placed["node-b"] == set(BOTS)
            for bot in BOTS:
                owner = rendezvous_owner(bot, REPLICAS)
                assert bot in placed[owner or ""], f"{bot} is not on its rendezvous winner"
                async with http.get(f"{api}/bots/{bot}/session") as r:
                    assert (await r.json())["state"] == "OPEN", "the gateway reaches the owner"
            victim = max(REPLICAS, key=lambda r: len(placed[r]))
            survivor = next(r for r in REPLICAS if r != victim)
            moved = placed[victim]
            assert moved, "the test needs the victim to hold at least one bot"
            await nodes[victim].kill()
            killed_at = time.monotonic()
            await wait_until(lambda: moved <= _bots_on(nodes[survivor]), within=8 * TTL_SECONDS)
            took = time.monotonic() - killed_at
            # Membership and session leases expire after one TTL each, checked every TTL/3.
            assert took <= 3 * TTL_SECONDS, f"the bots moved after {took:.1f} s"
            for bot in moved:
                async with http.get(f"{api}/bots/{bot}/session") as r:
                    body = await r.json()
                    assert r.status == 200 and body["state"] == "OPEN", body
    finally:
        await subscriber.close()
        for node in nodes.values():
            await node.stop()
        await gateway.stop()
        await queue.stop()
    ids = [m.message.provider_message_id for m in subscriber.messages]
    assert len(ids) == len(set(ids)) == 3 * len(BOTS), "every message exactly once"
    assert not [e for n in nodes.values() for e in n.events if e.get("event") == "qr_shown"]


def _received(subscriber: ResumingSubscriber) -> int:
    return len({m.message.provider_message_id for m in subscriber.messages})
