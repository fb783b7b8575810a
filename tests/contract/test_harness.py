"""The harness itself: a real server, a real channel, the standard health service."""

from __future__ import annotations

import grpc
from grpc_health.v1 import _async as health_aio  # health.aio re-exports it untyped
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.helpers.grpc_harness import serve_on_loopback


async def test_harness_serves_health_over_a_real_channel() -> None:
    servicer = health_aio.HealthServicer()
    await servicer.set("probe", health_pb2.HealthCheckResponse.SERVING)

    def register(server: grpc.aio.Server) -> None:
        health_pb2_grpc.add_HealthServicer_to_server(servicer, server)

    async with serve_on_loopback(register) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        reply = await stub.Check(health_pb2.HealthCheckRequest(service="probe"))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
