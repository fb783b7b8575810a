"""queue_svc as a real process: SIGKILL with placeholders pending, restart, recovery of
the placeholders and of the windows' history;
health checking, reflection and a graceful SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
from chatbot.common.v1 import message_pb2 as m
from chatbot.queue.v1 import queue_service_pb2 as q
from chatbot.queue.v1 import queue_service_pb2_grpc as q_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

if TYPE_CHECKING:
    Stub = q_grpc.QueueServiceAsyncStub

BOT = "bot-p"
ROOT = Path(__file__).resolve().parents[2]


class Process:
    def __init__(self, proc: asyncio.subprocess.Process, port: int) -> None:
        self.proc = proc
        self.port = port


async def start(db: Path, **env: str) -> Process:
    environment = {
        **os.environ,
        "SQLITE_PATH": str(db),
        "QUEUE_SVC_PORT": "0",
        "QUEUE_SVC_METRICS_PORT": "0",
        **env,
    }
    environment.pop("MONGODB_URI", None)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.queue_svc",
        cwd=ROOT,
        env=environment,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 30)
    text = line.decode().strip()
    assert text.startswith("queue_svc listening on 127.0.0.1:"), text
    return Process(proc, int(text.rsplit(":", 1)[1]))


@asynccontextmanager
async def channel(process: Process) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{process.port}") as ch:
        await asyncio.wait_for(ch.channel_ready(), 10)
        yield ch


def message(content: str, pid: str) -> q.NewMessage:
    msg = q.NewMessage(
        content=content, sender="u@s", source=m.MESSAGE_SOURCE_USER, provider_message_id=pid
    )
    # Sent now: within the bot's max_age, so a restart puts it back into the window.
    msg.originating_time.GetCurrentTime()
    return msg


async def placeholders(stub: Stub) -> list[tuple[int, str]]:
    window = await stub.GetWindow(q.GetWindowRequest(bot_id=BOT, correspondent_id="c1"))
    return [(w.id, w.media_processing_id) for w in window.messages if w.media_processing_id]


async def window(stub: Stub) -> list[tuple[int, str, str]]:
    """(id, content, media_processing_id) of the whole window, in the order it is given."""
    reply = await stub.GetWindow(q.GetWindowRequest(bot_id=BOT, correspondent_id="c1"))
    return [(w.id, w.content, w.media_processing_id) for w in reply.messages]


async def kill(process: Process) -> None:
    process.proc.send_signal(signal.SIGKILL)
    assert await process.proc.wait() == -signal.SIGKILL


async def test_sigkill_with_pending_placeholders_then_restart_and_start_bot(
    tmp_path: Path,
) -> None:
    db = tmp_path / "chatbot.sqlite3"
    media = [str(uuid.uuid4()), str(uuid.uuid4())]
    first = await start(db)
    try:
        async with channel(first) as ch:
            stub: Stub = q_grpc.QueueServiceStub(ch)
            assert (await stub.StartBot(q.StartBotRequest(bot_id=BOT))).started
            assert (
                await stub.AddMessage(
                    q.AddMessageRequest(
                        bot_id=BOT, correspondent_id="c1", message=message("text", "WA-1")
                    )
                )
            ).id == 1
            assert (
                await stub.AddMessage(
                    q.AddMessageRequest(
                        bot_id=BOT, correspondent_id="c2", message=message("other", "WA-C2")
                    )
                )
            ).id == 1
            for i, mid in enumerate(media):
                reply = await stub.InjectPlaceholder(
                    q.InjectPlaceholderRequest(
                        bot_id=BOT,
                        correspondent_id="c1",
                        message=message("", f"WA-M{i}"),
                        media_processing_id=mid,
                        mime_type="image/jpeg",
                        media_kind=m.MEDIA_KIND_IMAGE,
                        condition=q.MEDIA_CONDITION_STAGED,
                    )
                )
                assert reply.id == 2 + i
            # Ready after the placeholders, so the window's id order differs from the
            # order messages became ready.
            assert (
                await stub.AddMessage(
                    q.AddMessageRequest(
                        bot_id=BOT, correspondent_id="c1", message=message("text 2", "WA-1b")
                    )
                )
            ).id == 4
    finally:
        await kill(first)

    # Restarted without automatic resumption: the explicit StartBot recovers.
    second = await start(db, QUEUE_SVC_RESUME_BOTS="false")
    try:
        async with channel(second) as ch:
            stub = q_grpc.QueueServiceStub(ch)
            started = await stub.StartBot(q.StartBotRequest(bot_id=BOT))
            assert started.started and started.placeholders_restored == 2
            # The earlier ready messages are back (GetWindow: the bot's context), in id
            # order with the recovered placeholders.
            assert await window(stub) == [
                (1, "text", ""),
                (2, "", media[0]),
                (3, "", media[1]),
                (4, "text 2", ""),
            ]
            other = await stub.GetWindow(q.GetWindowRequest(bot_id=BOT, correspondent_id="c2"))
            assert [(w.id, w.content) for w in other.messages] == [(1, "other")]
            assert (
                await stub.AddMessage(
                    q.AddMessageRequest(
                        bot_id=BOT, correspondent_id="c1", message=message("after", "WA-2")
                    )
                )
            ).id == 5
            resent = await stub.AddMessage(
                q.AddMessageRequest(
                    bot_id=BOT, correspondent_id="c1", message=message("text", "WA-1")
                )
            )
            assert resent.duplicate
    finally:
        await kill(second)

    # Restarted with the default: the bot is resumed by itself; StartBot is harmless.
    third = await start(db)
    try:
        async with channel(third) as ch:
            stub = q_grpc.QueueServiceStub(ch)
            assert not (await stub.StartBot(q.StartBotRequest(bot_id=BOT))).started
            assert await placeholders(stub) == [(2, media[0]), (3, media[1])]
            assert [(i, c) for i, c, _ in await window(stub)] == [
                (1, "text"),
                (2, ""),
                (3, ""),
                (4, "text 2"),
                (5, "after"),
            ]
            assert (
                await stub.AddMessage(
                    q.AddMessageRequest(
                        bot_id=BOT, correspondent_id="c1", message=message("later", "WA-3")
                    )
                )
            ).id == 6
            health = health_pb2_grpc.HealthStub(ch)
            for service in ("", "chatbot.queue.v1.QueueService"):
                reply = await health.Check(health_pb2.HealthCheckRequest(service=service))
                assert reply.status == health_pb2.HealthCheckResponse.SERVING
            reflection = reflection_pb2_grpc.ServerReflectionStub(ch)
            responses = reflection.ServerReflectionInfo(
                iter([reflection_pb2.ServerReflectionRequest(list_services="")])
            )
            async for response in responses:
                names = {s.name for s in response.list_services_response.service}
                assert "chatbot.queue.v1.QueueService" in names
                break
        third.proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(third.proc.wait(), 20) == 0
    finally:
        if third.proc.returncode is None:
            await kill(third)
