"""Health reflects reality: gRPC health of queue_svc and media_svc and the gateway's
readiness follow the store and queue_svc going away and coming back.

The store is made unreachable the way a real outage of an embedded SQLite store looks:
another process holds its write lock, so no write can get through. queue_svc is
stopped with SIGKILL and started again on the same port.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import aiohttp
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.helpers.node_api import fake_node_api
from tests.helpers.processes import (
    Service,
    free_port,
    gateway_env,
    media_env,
    queue_env,
    start_service,
)

PROBE = {"STORE_PROBE_INTERVAL_SECONDS": "0.1", "STORE_PROBE_TIMEOUT_SECONDS": "0.3"}
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def _grpc_status(address: str) -> int:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=2)
        return int(reply.status)


async def _ready(http: aiohttp.ClientSession, gateway: str) -> tuple[int, list[str]]:
    async with http.get(f"http://{gateway}/readyz") as response:
        body: dict[str, Any] = await response.json()
        return response.status, list(body["problems"])


async def _eventually(check: Any, within: float = 10) -> Any:
    """Polls the coroutine function `check` until it returns something truthy."""
    async with asyncio.timeout(within):
        while True:
            result = await check()
            if result:
                return result
            await asyncio.sleep(0.05)


async def test_health_and_readiness_follow_the_store_and_queue_svc(tmp_path: Path) -> None:
    db, staging = tmp_path / "store.sqlite3", tmp_path / "staging"
    staging.mkdir()
    queue_port = free_port()
    calls: list[dict[str, Any]] = []
    node_runner, node_url = await fake_node_api(calls, "n")
    queue_log = tmp_path / "queue.log"
    queue = await start_service(
        "services.queue_svc", {**queue_env(db, port=queue_port), **PROBE}, queue_log
    )
    media = await start_service(
        "services.media_svc",
        {**media_env(db, staging, queue.address), **PROBE},
        tmp_path / "media.log",
    )
    gateway = await start_service(
        "services.gateway",
        {
            **gateway_env(
                db, queue.address, node_url, node_ws_token="t", api_token="a", node_api_token="n"
            ),
            "GATEWAY_READY_TIMEOUT_SECONDS": "0.3",
        },
        tmp_path / "gateway.log",
    )
    services: list[Service] = [gateway, media, queue]
    try:
        async with aiohttp.ClientSession() as http:
            assert await _grpc_status(queue.address) == SERVING
            assert await _grpc_status(media.address) == SERVING
            assert await _ready(http, gateway.address) == (200, [])

            # The store's write lock is taken by someone else: nothing can be written.
            lock = sqlite3.connect(db, isolation_level=None)
            lock.execute("BEGIN IMMEDIATE")
            try:

                async def both_not_serving() -> bool:
                    statuses = [await _grpc_status(a) for a in (queue.address, media.address)]
                    return statuses == [NOT_SERVING, NOT_SERVING]

                await _eventually(both_not_serving)

                async def not_ready() -> list[str] | None:
                    status, problems = await _ready(http, gateway.address)
                    return problems if status == 503 else None

                problems = await _eventually(not_ready)
                assert any("store" in p for p in problems), problems
            finally:
                lock.execute("ROLLBACK")
                lock.close()

            async def both_serving() -> bool:
                statuses = [await _grpc_status(a) for a in (queue.address, media.address)]
                return statuses == [SERVING, SERVING]

            await _eventually(both_serving)
            assert await _eventually(lambda: _ready_ok(http, gateway.address))

            # queue_svc dies: the gateway is not ready until it is back on its address.
            await queue.kill()
            services.remove(queue)
            problems = await _eventually(lambda: _shard_down(http, gateway.address))
            assert any("queue_svc shard 0" in p for p in problems), problems
            queue = await start_service(
                "services.queue_svc", {**queue_env(db, port=queue_port), **PROBE}, queue_log
            )
            services.append(queue)
            assert await _eventually(lambda: _ready_ok(http, gateway.address))
    finally:
        codes = [await service.stop() for service in services]
        await node_runner.cleanup()
    assert codes == [0] * len(codes)


async def _ready_ok(http: aiohttp.ClientSession, gateway: str) -> bool:
    return await _ready(http, gateway) == (200, [])


async def _shard_down(http: aiohttp.ClientSession, gateway: str) -> list[str] | None:
    status, problems = await _ready(http, gateway)
    return problems if status == 503 else None
