"""A round-robin TCP proxy on loopback, standing in for a Service in front of several
replicas: each new connection goes to the next upstream, and to the one after it when
that one refuses (a SIGKILLed replica), as kube-proxy's endpoints drop a dead pod."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import Counter
from collections.abc import Sequence


class RoundRobinProxy:
    def __init__(self, upstreams: Sequence[str]) -> None:
        self.upstreams = list(upstreams)
        self._turn = itertools.count()
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        # Connections handed to each upstream (the test checks both were used).
        self.connections: Counter[str] = Counter()
        self.address = ""

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        host, port = self._server.sockets[0].getsockname()[:2]
        self.address = f"{host}:{port}"
        return self.address

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for pipe in list(self._pipes):
            pipe.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Ends normally even when cancelled (the loop closing): asyncio's stream server
        # logs a handler task that ends cancelled as an error.
        with contextlib.suppress(asyncio.CancelledError):
            await self._serve(reader, writer)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        first = next(self._turn)
        for offset in range(len(self.upstreams)):
            upstream = self.upstreams[(first + offset) % len(self.upstreams)]
            host, port = upstream.rsplit(":", 1)
            try:
                up_reader, up_writer = await asyncio.open_connection(host, int(port))
            except OSError:
                continue
            self.connections[upstream] += 1
            pipes = [
                asyncio.create_task(_pipe(reader, up_writer)),
                asyncio.create_task(_pipe(up_reader, writer)),
            ]
            self._pipes.update(pipes)
            try:
                # Either side closing ends the connection on both, as a dead pod does.
                await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for pipe in pipes:
                    pipe.cancel()
                await asyncio.gather(*pipes, return_exceptions=True)
                self._pipes.difference_update(pipes)
                for side in (up_writer, writer):
                    side.close()
            return
        writer.close()  # no upstream alive: refused, as a Service without endpoints


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
