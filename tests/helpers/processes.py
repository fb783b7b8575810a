"""Real service subprocesses (Python services, the Node server) for integration tests,
benchmarks and the demo."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import grpc
from chatbot.common.v1 import message_pb2
from chatbot.queue.v1 import queue_service_pb2, queue_service_pb2_grpc
from google.protobuf.timestamp_pb2 import Timestamp

REPO = Path(__file__).resolve().parents[2]
PLACEHOLDER_CONDITIONS = {
    "staged": queue_service_pb2.MEDIA_CONDITION_STAGED,
    "corrupt": queue_service_pb2.MEDIA_CONDITION_CORRUPT,
    "over_quota": queue_service_pb2.MEDIA_CONDITION_OVER_QUOTA,
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Service:
    """A service subprocess; `address` is what it printed as `… listening on H:P`."""

    name: str
    process: asyncio.subprocess.Process
    address: str
    log: IO[bytes] = field(repr=False)

    async def wait_exit(self, within: float) -> int:
        return await asyncio.wait_for(self.process.wait(), within)

    async def kill(self) -> None:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGKILL)
        await self.process.wait()
        self.log.close()

    async def stop(self, within: float = 15) -> int:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.wait_for(self.process.wait(), within)
        except TimeoutError:
            self.process.kill()
            code = await self.process.wait()
        self.log.close()
        return code


async def reap(process: asyncio.subprocess.Process, within: float = 10) -> None:
    """Collects a process that was SIGKILLed: waits for its pipes, and closes them when
    a child it left behind (a media_svc pool worker) keeps them open past `within`, so no
    transport is left for the garbage collector to warn about."""
    try:
        await asyncio.wait_for(process.wait(), within)
    except TimeoutError:
        # asyncio offers no public way to drop a subprocess's pipes without waiting.
        transport = getattr(process, "_transport", None)
        if transport is not None:
            transport.close()


async def start_process(
    name: str,
    argv: Sequence[str],
    env: Mapping[str, str],
    log_path: Path,
    *,
    ready: Callable[[str], str | None],
    within: float = 20,
) -> Service:
    """Starts `argv` and waits until `ready` finds the address in a stdout line.

    stderr goes to `log_path`; the rest of stdout stays readable by the caller.
    """
    log = log_path.open("ab")
    process = await asyncio.create_subprocess_exec(
        *argv,
        cwd=REPO,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=log,
    )
    assert process.stdout is not None
    try:
        async with asyncio.timeout(within):
            while True:
                line = (await process.stdout.readline()).decode()
                if not line:
                    raise RuntimeError(f"{name} exited early; see {log_path}")
                address = ready(line)
                if address is not None:
                    break
    except BaseException:
        process.kill()
        await process.wait()
        log.close()
        raise
    return Service(name, process, address, log)


def _listening_line(line: str) -> str | None:
    # Every Python service prints `<name> listening on HOST:PORT` once it serves.
    return line.rsplit(" ", 1)[1].strip() if "listening on" in line else None


async def start_service(
    module: str, env: Mapping[str, str], log_path: Path, within: float = 20
) -> Service:
    """A Python service: `python -m <module>`."""
    argv = [sys.executable, "-m", module]
    return await start_process(module, argv, env, log_path, ready=_listening_line, within=within)


def queue_env(sqlite_path: Path, port: int = 0, shard: str = "0/1") -> dict[str, str]:
    """`shard` is QUEUE_SVC_SHARD (`<index>/<count>`)."""
    return {
        "STORE_BACKEND": "sqlite",
        "SQLITE_PATH": str(sqlite_path),
        "QUEUE_SVC_HOST": "127.0.0.1",
        "QUEUE_SVC_PORT": str(port),
        "QUEUE_SVC_METRICS_PORT": "0",
        "QUEUE_SVC_DEFINITIONS_REFRESH_SECONDS": "0.2",
        "QUEUE_SVC_SHARD": shard,
    }


def media_env(
    sqlite_path: Path, staging: Path, queue_address: str, **overrides: str
) -> dict[str, str]:
    env = {
        "STORE_BACKEND": "sqlite",
        "SQLITE_PATH": str(sqlite_path),
        "MEDIA_SVC_HOST": "127.0.0.1",
        "MEDIA_SVC_PORT": "0",
        "MEDIA_SVC_METRICS_PORT": "0",
        "QUEUE_SVC_ADDRESS": queue_address,
        "MEDIA_STAGING_DIR": str(staging),
        "MEDIA_LEASE_SECONDS": "1",
        "MEDIA_POLL_FALLBACK_SECONDS": "0.2",
        "MEDIA_REDELIVERY_AFTER_SECONDS": "0.3",
        "MEDIA_REDELIVERY_INTERVAL_SECONDS": "0.3",
        "MEDIA_DEFINITIONS_RELOAD_SECONDS": "0.2",
        "MEDIA_BACKOFF_BASE_SECONDS": "0.05",
        "MEDIA_BACKOFF_MAX_SECONDS": "0.2",
        "MEDIA_SHUTDOWN_GRACE_SECONDS": "2",
        # Engines load on a pool's first job: most tests never use most pools, and
        # loading Whisper and OCR in every media_svc a test starts costs the CPU time
        # the other tests need.
        "MEDIA_WARM_POOLS": "false",
        "LOG_LEVEL": "INFO",
    }
    env.update(overrides)
    return env


def gateway_env(
    sqlite_path: Path,
    queue_address: str,
    node_url: str,
    *,
    node_ws_token: str,
    api_token: str,
    node_api_token: str,
) -> dict[str, str]:
    return {
        "STORE_BACKEND": "sqlite",
        "SQLITE_PATH": str(sqlite_path),
        "GATEWAY_HOST": "127.0.0.1",
        "GATEWAY_PORT": "0",
        "GATEWAY_METRICS_PORT": "0",
        "GATEWAY_TOKEN": node_ws_token,
        "GATEWAY_API_TOKEN": api_token,
        "QUEUE_SVC_ADDRESS": queue_address,
        "NODE_API_URL": node_url,
        "NODE_API_TOKEN": node_api_token,
        # Where Node stages media through the gateway (MEDIA_STORE=filesystem): beside the
        # store, where media_env's callers put media_svc's staging directory too.
        "MEDIA_STAGING_DIR": str(sqlite_path.parent / "staging"),
    }


def placeholder(
    bot_id: str,
    correspondent_id: str,
    *,
    caption: str = "",
    condition: str = "staged",
    media_kind: int = message_pb2.MEDIA_KIND_IMAGE,
    mime_type: str = "image/jpeg",
    media_processing_id: str | None = None,
    provider_message_id: str | None = None,
) -> queue_service_pb2.InjectPlaceholderRequest:
    sent = Timestamp()
    sent.FromDatetime(datetime.now(UTC))
    return queue_service_pb2.InjectPlaceholderRequest(
        bot_id=bot_id,
        correspondent_id=correspondent_id,
        message=queue_service_pb2.NewMessage(
            content=caption,
            sender=correspondent_id,
            source=message_pb2.MESSAGE_SOURCE_USER,
            originating_time=sent,
            provider_message_id=provider_message_id or f"WA-{uuid.uuid4().hex[:16]}",
        ),
        media_processing_id=media_processing_id or str(uuid.uuid4()),
        mime_type=mime_type,
        media_kind=media_kind,  # type: ignore[arg-type]
        file_size=3 if condition == "staged" else 0,
        condition=PLACEHOLDER_CONDITIONS[condition],
    )


class Subscriber:
    """Collects every message of a Subscribe stream (re-subscribes after an outage).

    Given several addresses — the queue_svc shards — it subscribes to each and merges
    the streams, as the bot logic must (each shard emits only its own bots' messages);
    `origins[i]` is the address `messages[i]` came from.
    """

    def __init__(self, address: str | Sequence[str], bot_id: str | None = None) -> None:
        self.addresses = [address] if isinstance(address, str) else list(address)
        self.address = self.addresses[0]
        self.bot_id = bot_id
        self.messages: list[message_pb2.AddressedMessage] = []
        self.origins: list[str] = []
        self.changed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._connected = {a: asyncio.Event() for a in self.addresses}

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self._run(a)) for a in self.addresses]
        async with asyncio.timeout(10):
            for connected in self._connected.values():
                await connected.wait()

    async def _run(self, address: str) -> None:
        while True:
            try:
                async with grpc.aio.insecure_channel(address) as channel:
                    stub = queue_service_pb2_grpc.QueueServiceStub(channel)
                    request = queue_service_pb2.SubscribeRequest()
                    if self.bot_id is not None:
                        request.bot_id = self.bot_id
                    stream = stub.Subscribe(request)
                    await channel.channel_ready()
                    self._connected[address].set()
                    async for response in stream:
                        self.messages.append(response.message)
                        self.origins.append(address)
                        self.changed.set()
            except grpc.aio.AioRpcError:
                await asyncio.sleep(0.1)

    def from_address(self, address: str) -> list[message_pb2.AddressedMessage]:
        """The messages that came out of one shard's stream."""
        return [m for m, o in zip(self.messages, self.origins, strict=True) if o == address]

    def contents(self, provider_message_id: str) -> list[str]:
        return [
            m.message.content
            for m in self.messages
            if m.message.provider_message_id == provider_message_id
        ]

    async def wait_for(self, count: int, within: float) -> None:
        async with asyncio.timeout(within):
            while len(self.messages) < count:
                self.changed.clear()
                await self.changed.wait()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
