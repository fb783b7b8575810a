"""Growing queue_svc from 2 to 3 shards while traffic flows (README.md "Resizing
queue_svc"), with real processes on one SQLite file: `resize stop` stops the moving bots
on their old shards, the third shard and a gateway that knows three addresses come up,
traffic switches to that gateway (a rolling update of the gateways), and `resize start`
starts the moved bots on the new shard. Meanwhile every bot keeps sending, resending
on RETRY as Node does. Every accepted message comes out exactly once and in order;
a moved bot's messages come out of its old shard, then only of its new one; the others
never change shard."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import grpc
import pytest
from chatbot.queue.v1 import queue_service_pb2 as q
from chatbot.queue.v1 import queue_service_pb2_grpc as q_grpc
from chatbot.wire.v1 import frames_pb2 as w

from services.common.sharding import shard_of
from services.common.wire import parse_gateway_frame
from tests.helpers.clock import iso_now
from tests.helpers.node_api import fake_node_api
from tests.helpers.processes import REPO, Service, Subscriber, gateway_env, queue_env, start_service
from tests.helpers.waiting import wait_until

NODE_TOKEN, API_TOKEN, NODE_API_TOKEN = "node-secret", "api-secret", "node-api-secret"
CHAT = "4915112345678@s.whatsapp.net"
MOVING, STAYING = 3, 5
# Messages each bot has accepted before the resize starts and after it ends.
BEFORE, AFTER = 3, 3


def _bots() -> tuple[list[str], list[str]]:
    moving: list[str] = []
    staying: list[str] = []
    for n in itertools.count():
        bot = f"resize-{n}"
        group = moving if shard_of(bot, 2) != shard_of(bot, 3) else staying
        if len(group) < (MOVING if group is moving else STAYING):
            group.append(bot)
        if len(moving) == MOVING and len(staying) == STAYING:
            return moving, staying
    raise AssertionError("unreachable")


MOVING_BOTS, STAYING_BOTS = _bots()
BOTS = MOVING_BOTS + STAYING_BOTS


@dataclass
class Traffic:
    """Like Node: one sender per bot, each frame resent until accepted."""

    http: aiohttp.ClientSession
    gateway: str
    accepted: dict[str, list[int]] = field(default_factory=lambda: {b: [] for b in BOTS})
    retries: dict[str, int] = field(default_factory=lambda: dict.fromkeys(BOTS, 0))
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def send(self, bot: str, n: int) -> None:
        frame_id = f"t-{bot}-{n}-{uuid.uuid4().hex[:6]}"
        text = json.dumps(
            {
                "frameId": frame_id,
                "textMessage": {
                    "header": {
                        "botId": bot,
                        "correspondentId": CHAT,
                        "sender": CHAT,
                        "providerMessageId": f"WA-{bot}-{n}",
                        "originatingTime": iso_now(),
                    },
                    "message": f"{bot} says {n}",
                },
            }
        )
        headers = {"Authorization": f"Bearer {NODE_TOKEN}"}
        while True:
            try:
                async with self.http.ws_connect(f"http://{self.gateway}/ws", headers=headers) as ws:
                    await ws.send_str(text)
                    ack = parse_gateway_frame((await ws.receive(timeout=10)).data).ack
            except (aiohttp.ClientError, TimeoutError):
                ack = w.Ack(status=w.ACK_STATUS_RETRY)
            if ack.status in (w.ACK_STATUS_ACCEPTED, w.ACK_STATUS_DUPLICATE):
                self.accepted[bot].append(n)
                return
            assert ack.status == w.ACK_STATUS_RETRY, ack
            self.retries[bot] += 1
            await asyncio.sleep(0.1)

    async def run(self, bot: str) -> None:
        for n in itertools.count():
            await self.send(bot, n)
            if self.stop.is_set():
                return
            await asyncio.sleep(0.05)

    async def at_least(self, count: int, within: float) -> None:
        await wait_until(lambda: all(len(v) >= count for v in self.accepted.values()), within)


async def _resize(phase: str, addresses: list[str], db: Path, state: Path) -> str:
    env = {**os.environ, "STORE_BACKEND": "sqlite", "SQLITE_PATH": str(db)}
    command = [
        sys.executable,
        "-m",
        "services.common.resize",
        phase,
        "--from=2",
        "--to=3",
        f"--addresses={','.join(addresses)}",
        f"--state={state}",
        "--wait-seconds=30",
    ]
    process = await asyncio.create_subprocess_exec(
        *command, cwd=REPO, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    return out.decode()


@pytest.fixture
async def services(tmp_path: Path) -> AsyncIterator[list[Service]]:
    started: list[Service] = []
    yield started
    for service in reversed(started):
        assert await service.stop() == 0, f"{service.name} did not stop cleanly"


async def test_growing_from_two_to_three_shards_moves_only_the_bots_that_must_move(
    tmp_path: Path, services: list[Service]
) -> None:
    db = tmp_path / "store.sqlite3"
    node_runner, node_url = await fake_node_api([], NODE_API_TOKEN)
    old = list(
        await asyncio.gather(
            *(
                start_service(
                    "services.queue_svc", queue_env(db, shard=f"{i}/2"), tmp_path / f"q{i}.log"
                )
                for i in range(2)
            )
        )
    )
    services.extend(old)

    def gateway(addresses: list[str]) -> dict[str, str]:
        return gateway_env(
            db,
            ",".join(addresses),
            node_url,
            node_ws_token=NODE_TOKEN,
            api_token=API_TOKEN,
            node_api_token=NODE_API_TOKEN,
        )

    old_addresses = [s.address for s in old]
    gateway_a = await start_service(
        "services.gateway", gateway(old_addresses), tmp_path / "gateway-a.log"
    )
    services.append(gateway_a)
    subscriber = Subscriber(old_addresses)
    await subscriber.start()
    async with aiohttp.ClientSession() as http:
        auth = {"Authorization": f"Bearer {API_TOKEN}"}
        for bot in BOTS:
            api = f"http://{gateway_a.address}/bots/{bot}"
            async with http.put(f"{api}/config", json={}, headers=auth) as r:
                assert r.status == 200, await r.text()
            async with http.post(f"{api}/start", json={}, headers=auth) as r:
                assert r.status == 200, await r.text()

        traffic = Traffic(http, gateway_a.address)
        senders = [asyncio.create_task(traffic.run(bot)) for bot in BOTS]
        try:
            await _grow(
                traffic, senders, db, tmp_path, old_addresses, subscriber, gateway, services
            )
        finally:
            for sender in senders:
                sender.cancel()
    await subscriber.close()
    await node_runner.cleanup()


async def _grow(
    traffic: Traffic,
    senders: list[asyncio.Task[None]],
    db: Path,
    tmp_path: Path,
    old_addresses: list[str],
    subscriber: Subscriber,
    gateway: Callable[[list[str]], dict[str, str]],
    services: list[Service],
) -> None:
    await traffic.at_least(BEFORE, within=30)

    state = tmp_path / "resize.json"
    stopped = await _resize("stop", old_addresses, db, state)
    assert f"stopped {MOVING} moving bot(s)" in stopped
    assert {m[0] for m in json.loads(state.read_text())["moves"]} == set(MOVING_BOTS)
    before_move = {b: len(traffic.accepted[b]) for b in MOVING_BOTS}
    retries_before = {b: traffic.retries[b] for b in MOVING_BOTS}

    # The rollout: the third shard, then gateways that know three shards.
    new = await start_service("services.queue_svc", queue_env(db, shard="2/3"), tmp_path / "q2.log")
    services.append(new)
    new_addresses = [*old_addresses, new.address]
    new_subscriber = Subscriber([new.address])
    await new_subscriber.start()
    gateway_b = await start_service(
        "services.gateway", gateway(new_addresses), tmp_path / "gateway-b.log"
    )
    services.append(gateway_b)
    traffic.gateway = gateway_b.address
    # While stopped, a moving bot's frames are answered RETRY, never accepted: wait
    # until each has been refused twice more, through the new gateway too.
    await wait_until(
        lambda: all(traffic.retries[b] >= retries_before[b] + 2 for b in MOVING_BOTS), within=20
    )
    assert {b: len(traffic.accepted[b]) for b in MOVING_BOTS} == before_move

    started = await _resize("start", new_addresses, db, state)
    assert f"started {MOVING} moved bot(s)" in started
    assert not state.exists()
    floor = max(len(v) for v in traffic.accepted.values())
    await traffic.at_least(floor + AFTER, within=30)
    traffic.stop.set()
    await asyncio.wait_for(asyncio.gather(*senders), 30)

    # One last frame per bot, sent after every other one was accepted: its shard emits
    # anything of that bot twice before it, so once each last frame is out, all is.
    for bot in BOTS:
        await traffic.send(bot, len(traffic.accepted[bot]))
    last = {f"{bot} says {len(traffic.accepted[bot]) - 1}" for bot in BOTS}
    await wait_until(
        lambda: (
            last <= {m.message.content for m in [*subscriber.messages, *new_subscriber.messages]}
        ),
        within=20,
    )
    emitted = [
        *zip(subscriber.messages, subscriber.origins, strict=True),
        *zip(new_subscriber.messages, new_subscriber.origins, strict=True),
    ]
    for bot in BOTS:
        sent = traffic.accepted[bot]
        assert sent == list(range(len(sent)))
        out = [(m.message.content, origin) for m, origin in emitted if m.bot_id == bot]
        contents = sorted((c for c, _ in out), key=lambda c: int(c.rsplit(" ", 1)[1]))
        # Exactly once each: nothing lost, nothing duplicated.
        assert contents == [f"{bot} says {n}" for n in sent], bot
        by_shard = {origin: [c for c, o in out if o == origin] for origin in {o for _, o in out}}
        if bot in STAYING_BOTS:
            assert set(by_shard) == {old_addresses[shard_of(bot, 2)]}, bot
            continue
        # Served by its old shard, then by the new one only: the old shard's part
        # is a prefix of the conversation and the new shard's the rest.
        assert set(by_shard) == {old_addresses[shard_of(bot, 2)], new.address}, bot
        numbers = {o: [int(c.rsplit(" ", 1)[1]) for c in cs] for o, cs in by_shard.items()}
        assert max(numbers[old_addresses[shard_of(bot, 2)]]) < min(numbers[new.address])
        assert numbers[new.address] == sorted(numbers[new.address])

    # The old shard no longer serves a moved bot; the new one does.
    async with (
        grpc.aio.insecure_channel(old_addresses[shard_of(MOVING_BOTS[0], 2)]) as old_ch,
        grpc.aio.insecure_channel(new.address) as new_ch,
    ):
        request = q.GetWindowRequest(bot_id=MOVING_BOTS[0], correspondent_id=CHAT)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await q_grpc.QueueServiceStub(old_ch).GetWindow(request)
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        window = await q_grpc.QueueServiceStub(new_ch).GetWindow(request)
        assert window.messages, "the moved bot's history is on its new shard"
    await new_subscriber.close()
