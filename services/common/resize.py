"""Changing the number of queue_svc shards online: only the bots whose owner changes move.

    python -m services.common.resize plan  --from 2 --to 3
    python -m services.common.resize stop  --from 2 --to 3
    (apply the new count: shards, QUEUE_SVC_ADDRESS of every caller; README.md)
    python -m services.common.resize start --from 2 --to 3

With rendezvous hashing (services/common/sharding.py) a change of the shard count
moves about 1/N of the bots. `stop` records the active bots that move (in the state
file, before touching anything, so a rerun after a crash finishes the job), then stops
each on its old shard: its queues are drained and persisted, and it leaves the
registry of active bots, so no shard resumes it while the counts change. Until it is
started again the gateway answers its frames RETRY and Node resends them; media
results for it are retried by media_svc. `start` starts each moved bot on its new
shard, retrying while that shard is not yet up with the new count. A moving bot is
therefore never served by two shards at once, and every other bot stays where it is.

Addresses: `--addresses` (default QUEUE_SVC_ADDRESS) in shard order, at least as many as
the larger count; the old shards are the first `--from` entries and the new ones the
first `--to`, as a StatefulSet's ordinals are. The active bots come from the store
(STORE_BACKEND, SQLITE_PATH or MONGODB_URI, as the services read them).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import grpc
from chatbot.queue.v1 import queue_service_pb2 as q
from chatbot.queue.v1 import queue_service_pb2_grpc as q_grpc

from services.common.errors import InvalidInputError
from services.common.sharding import ADDRESS_VARIABLE, ShardAddresses, shard_of
from services.common.store import StoreConfig, open_store

DEFAULT_STATE_PATH = Path("./var/resize-state.json")
DEFAULT_WAIT_SECONDS = 600.0
DEFAULT_RPC_TIMEOUT_SECONDS = 30.0
# Answers that mean "not yet" while shards restart with the new count.
_TRANSIENT = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


@dataclass(frozen=True, slots=True)
class Move:
    bot_id: str
    source: int
    target: int


def moves(active_bots: Iterable[str], old_count: int, new_count: int) -> list[Move]:
    """The active bots whose shard differs between the two counts, in id order."""
    found = [
        Move(bot, shard_of(bot, old_count), shard_of(bot, new_count))
        for bot in sorted(set(active_bots))
    ]
    return [m for m in found if m.source != m.target]


@dataclass(frozen=True, slots=True)
class ResizePlan:
    old_count: int
    new_count: int
    addresses: ShardAddresses

    def __post_init__(self) -> None:
        if self.old_count < 1 or self.new_count < 1:
            raise InvalidInputError("--from and --to must be shard counts >= 1")
        if self.old_count == self.new_count:
            raise InvalidInputError(f"--from and --to are both {self.old_count}: nothing moves")

    def require_addresses(self, count: int, phase: str) -> None:
        """`stop` talks to the old shards, `start` to the new ones."""
        if self.addresses.count < count:
            raise InvalidInputError(
                f"{ADDRESS_VARIABLE} / --addresses lists {self.addresses.count} shard "
                f"address(es); `{phase}` needs the first {count} (one per shard, in shard "
                "order)"
            )

    def old_address(self, move: Move) -> str:
        return self.addresses.addresses[move.source]

    def new_address(self, move: Move) -> str:
        return self.addresses.addresses[move.target]


def save_state(path: Path, plan: ResizePlan, pending: Sequence[Move]) -> None:
    """Atomically (rename), so a crash leaves the old or the new state, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "from": plan.old_count,
        "to": plan.new_count,
        "moves": [[m.bot_id, m.source, m.target] for m in pending],
    }
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(document, indent=1))
    partial.replace(path)


def load_state(path: Path, plan: ResizePlan) -> list[Move]:
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as error:
        raise InvalidInputError(f"cannot read the resize state {path}: {error}") from error
    if (document.get("from"), document.get("to")) != (plan.old_count, plan.new_count):
        raise InvalidInputError(
            f"{path} records a resize {document.get('from')}->{document.get('to')}, not "
            f"{plan.old_count}->{plan.new_count}; finish that one or remove the file"
        )
    return [Move(str(b), int(s), int(t)) for b, s, t in document["moves"]]


class _Shards:
    """One channel per shard address, opened lazily."""

    def __init__(self) -> None:
        self._channels: dict[str, grpc.aio.Channel] = {}

    def stub(self, address: str) -> q_grpc.QueueServiceAsyncStub:
        if address not in self._channels:
            self._channels[address] = grpc.aio.insecure_channel(address)
        stub: q_grpc.QueueServiceAsyncStub = q_grpc.QueueServiceStub(self._channels[address])
        return stub

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close(None)


async def _stop_bot(
    stub: q_grpc.QueueServiceAsyncStub, request: q.StopBotRequest, rpc_timeout: float
) -> None:
    await stub.StopBot(request, timeout=rpc_timeout)


async def _start_bot(
    stub: q_grpc.QueueServiceAsyncStub, request: q.StartBotRequest, rpc_timeout: float
) -> None:
    await stub.StartBot(request, timeout=rpc_timeout)


async def _until_done(
    what: str, deadline: float, call: Callable[[], Awaitable[object]], retry_wrong_shard: bool
) -> None:
    """Calls `call()` until it answers, retrying transient errors until `deadline`."""
    delay = 0.1
    while True:
        try:
            await call()
            return
        except grpc.aio.AioRpcError as error:
            wrong_shard = error.code() == grpc.StatusCode.FAILED_PRECONDITION and (
                "belongs to queue_svc shard" in (error.details() or "")
            )
            if not (error.code() in _TRANSIENT or (retry_wrong_shard and wrong_shard)):
                raise InvalidInputError(
                    f"{what}: {error.code().name}: {error.details()}"
                ) from error
            if time.monotonic() + delay > deadline:
                raise TimeoutError(
                    f"{what}: still {error.code().name} ({error.details()}) when the wait ended"
                ) from error
        await asyncio.sleep(delay)
        delay = min(delay * 2, 2.0)


async def stop_moving_bots(
    plan: ResizePlan,
    active_bots: Iterable[str],
    state_path: Path,
    *,
    wait_seconds: float = DEFAULT_WAIT_SECONDS,
    rpc_timeout: float = DEFAULT_RPC_TIMEOUT_SECONDS,
) -> list[Move]:
    """Records, then stops every moving bot on its old shard, one at a time."""
    plan.require_addresses(plan.old_count, "stop")
    computed = moves(active_bots, plan.old_count, plan.new_count)
    # Bots a crashed earlier run already stopped are no longer active: keep them.
    recorded = load_state(state_path, plan)
    pending = {m.bot_id: m for m in [*recorded, *computed]}
    save_state(state_path, plan, list(pending.values()))
    deadline = time.monotonic() + wait_seconds
    shards = _Shards()
    try:
        for move in pending.values():
            stub = shards.stub(plan.old_address(move))
            request = q.StopBotRequest(bot_id=move.bot_id)
            await _until_done(
                f"StopBot {move.bot_id} on shard {move.source} ({plan.old_address(move)})",
                deadline,
                partial(_stop_bot, stub, request, rpc_timeout),
                retry_wrong_shard=False,
            )
    finally:
        await shards.close()
    return list(pending.values())


async def start_moved_bots(
    plan: ResizePlan,
    state_path: Path,
    *,
    wait_seconds: float = DEFAULT_WAIT_SECONDS,
    rpc_timeout: float = DEFAULT_RPC_TIMEOUT_SECONDS,
) -> list[Move]:
    """Starts every recorded bot on its new shard, waiting for that shard to run with
    the new count; removes the state file once all are started."""
    plan.require_addresses(plan.new_count, "start")
    pending = load_state(state_path, plan)
    deadline = time.monotonic() + wait_seconds
    shards = _Shards()
    try:
        for done, move in enumerate(pending):
            stub = shards.stub(plan.new_address(move))
            request = q.StartBotRequest(bot_id=move.bot_id)
            await _until_done(
                f"StartBot {move.bot_id} on shard {move.target} ({plan.new_address(move)})",
                deadline,
                partial(_start_bot, stub, request, rpc_timeout),
                retry_wrong_shard=True,
            )
            save_state(state_path, plan, pending[done + 1 :])
    finally:
        await shards.close()
    await asyncio.to_thread(state_path.unlink, missing_ok=True)
    return pending


async def _active_bots(env: Mapping[str, str]) -> list[str]:
    store = await open_store(StoreConfig.from_env(env))
    try:
        return await store.active_bots()
    finally:
        await store.close()


async def _main(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    addresses = ShardAddresses.parse(args.addresses or env.get(ADDRESS_VARIABLE, ""))
    plan = ResizePlan(args.old_count, args.new_count, addresses)
    if args.phase == "plan":
        for move in moves(await _active_bots(env), plan.old_count, plan.new_count):
            print(f"{move.bot_id}: shard {move.source} -> {move.target}")
        return 0
    if args.phase == "stop":
        stopped = await stop_moving_bots(
            plan, await _active_bots(env), args.state, wait_seconds=args.wait_seconds
        )
        print(
            f"stopped {len(stopped)} moving bot(s) on their old shards (recorded in "
            f"{args.state}); now run every shard and caller with {plan.new_count} shards, "
            f"then: python -m services.common.resize start --from {plan.old_count} "
            f"--to {plan.new_count}"
        )
        return 0
    started = await start_moved_bots(plan, args.state, wait_seconds=args.wait_seconds)
    print(f"started {len(started)} moved bot(s) on their new shards")
    return 0


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    parser = argparse.ArgumentParser(
        prog="python -m services.common.resize",
        description="Move the bots whose queue_svc shard changes with the shard count.",
    )
    parser.add_argument("phase", choices=("plan", "stop", "start"))
    parser.add_argument("--from", dest="old_count", type=int, required=True)
    parser.add_argument("--to", dest="new_count", type=int, required=True)
    parser.add_argument(
        "--addresses", default="", help=f"shard addresses in order (default ${ADDRESS_VARIABLE})"
    )
    parser.add_argument("--state", type=Path, default=DEFAULT_STATE_PATH)
    parser.add_argument(
        "--wait-seconds",
        type=float,
        default=DEFAULT_WAIT_SECONDS,
        help="how long to retry a shard that is not up (or not at the new count) yet",
    )
    args = parser.parse_args(argv)
    try:
        return asyncio.run(_main(args, env))
    except (InvalidInputError, TimeoutError) as error:
        print(f"resize: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
