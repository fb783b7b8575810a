"""Contract-test harness: a real grpc.aio server on an OS-chosen loopback port."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import grpc

Registrar = Callable[[grpc.aio.Server], None]


@asynccontextmanager
async def serve_on_loopback(
    *registrars: Registrar, interceptors: Sequence[grpc.aio.ServerInterceptor[Any, Any]] = ()
) -> AsyncIterator[grpc.aio.Channel]:
    """Starts a server with the given servicers registered and yields a channel to it.

    Port 0 lets the OS pick a free port, so tests run in parallel without clashing.
    `interceptors` are the service's edge (services.common.grpc_edge), as in production.
    """
    server = grpc.aio.server(interceptors=interceptors)
    for register in registrars:
        register(server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        await channel.channel_ready()
        yield channel
    finally:
        await channel.close(None)
        await server.stop(grace=None)
