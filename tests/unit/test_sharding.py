"""The bot → queue_svc shard map: stable across processes and releases, well spread,
and strict about the configuration it is read from."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import pytest

from services.common.errors import InvalidInputError
from services.common.sharding import ShardAddresses, ShardIdentity, shard_of

# Pinned on purpose: if these change, every deployed bot silently moves to another shard
# (its queues would be served by a replica that never started it).
PINNED = [
    ("bot-1", 2, 1),
    ("bot-1", 3, 1),
    ("bot-1", 8, 6),
    ("bot-b", 3, 1),
    ("4915112345678", 2, 0),
    ("4915112345678", 8, 5),
    ("support-bot", 8, 3),
    ("bot-ü", 3, 1),
]


@pytest.mark.parametrize(("bot_id", "count", "shard"), PINNED)
def test_the_map_is_pinned(bot_id: str, count: int, shard: int) -> None:
    assert shard_of(bot_id, count) == shard


def test_the_map_is_the_same_in_another_process() -> None:
    # str hash() is salted per process; the map must not be.
    code = (
        "from services.common.sharding import shard_of;"
        "print([shard_of(f'bot-{i}', 7) for i in range(50)])"
    )
    other = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert other == str([shard_of(f"bot-{i}", 7) for i in range(50)])


def test_one_shard_takes_every_bot() -> None:
    assert {shard_of(f"bot-{i}", 1) for i in range(100)} == {0}
    assert ShardAddresses().address_for("anything") == "127.0.0.1:50051"


@pytest.mark.parametrize("count", [2, 3, 5])
def test_bots_spread_evenly(count: int) -> None:
    bots = 6000
    counts = Counter(shard_of(f"bot-{i}", count) for i in range(bots))
    assert set(counts) == set(range(count))
    expected = bots / count
    assert all(abs(n - expected) < expected * 0.1 for n in counts.values()), counts


@pytest.mark.parametrize(("old", "new"), [(2, 3), (3, 4), (4, 3)])
def test_a_resize_moves_only_the_bots_that_must_move(old: int, new: int) -> None:
    """Rendezvous hashing: growing moves about 1/new of the bots, all onto the added
    shard; shrinking moves only the removed shard's bots (about 1/old)."""
    bots = [f"bot-{i}" for i in range(10_000)]
    moved = [
        (shard_of(b, old), shard_of(b, new)) for b in bots if shard_of(b, old) != shard_of(b, new)
    ]
    fraction = len(moved) / len(bots)
    ideal = 1 / max(old, new)
    assert abs(fraction - ideal) < 0.02, f"{old}->{new} moved {fraction:.3f}, ideal {ideal:.3f}"
    if new > old:
        assert {to for _, to in moved} == set(range(old, new))
    else:
        assert {frm for frm, _ in moved} == set(range(new, old))


def test_addresses_route_each_bot_to_its_shard() -> None:
    shards = ShardAddresses.parse(" queue-0:50051 , queue-1:50051 ")
    assert shards.addresses == ("queue-0:50051", "queue-1:50051")
    assert shards.count == 2
    assert shards.address_for("bot-1") == "queue-1:50051"
    assert shards.address_for("4915112345678") == "queue-0:50051"
    assert ShardAddresses.parse("") == ShardAddresses() == ShardAddresses.from_env({})


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("a:1,,b:2", "entry 2 is empty"),
        ("a:1,", "entry 2 is empty"),
        (",a:1", "entry 1 is empty"),
        ("a:1,b", "entry 2 must be host:port"),
        ("a:1,b:2,a:1", "lists a:1 more than once"),
    ],
)
def test_bad_address_lists_name_the_variable(text: str, says: str) -> None:
    with pytest.raises(InvalidInputError, match="QUEUE_SVC_ADDRESS") as error:
        ShardAddresses.parse(text)
    assert says in str(error.value)


def test_shard_identity_from_the_environment() -> None:
    assert ShardIdentity.from_env({}) == ShardIdentity(0, 1)
    assert ShardIdentity.from_env({"QUEUE_SVC_SHARD": "1/2"}) == ShardIdentity(1, 2)
    # A StatefulSet pod: the ordinal of its name is the index.
    pod = {"QUEUE_SVC_SHARD_COUNT": "2", "HOSTNAME": "queue-svc-1"}
    assert ShardIdentity.from_env(pod) == ShardIdentity(1, 2)
    # An explicit shard wins over the pod name (when the counts agree).
    assert ShardIdentity.from_env({**pod, "QUEUE_SVC_SHARD": "0/2"}) == ShardIdentity(0, 2)
    shard = ShardIdentity(1, 2)
    assert shard.owns("bot-1") and not shard.owns("4915112345678")
    assert shard.owner_of("4915112345678") == 0 and str(shard) == "1/2"


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"QUEUE_SVC_SHARD": "2"}, "QUEUE_SVC_SHARD must be <index>/<count>"),
        ({"QUEUE_SVC_SHARD": "2/2"}, "0 <= index < count"),
        ({"QUEUE_SVC_SHARD": "0/0"}, "0 <= index < count"),
        ({"QUEUE_SVC_SHARD": "0/2", "QUEUE_SVC_SHARD_COUNT": "3"}, "disagrees"),
        ({"QUEUE_SVC_SHARD_COUNT": "two", "HOSTNAME": "q-0"}, "QUEUE_SVC_SHARD_COUNT must be"),
        ({"QUEUE_SVC_SHARD_COUNT": "0", "HOSTNAME": "q-0"}, "QUEUE_SVC_SHARD_COUNT must be"),
        ({"QUEUE_SVC_SHARD_COUNT": "2", "HOSTNAME": "laptop"}, "does not end in -<ordinal>"),
        ({"QUEUE_SVC_SHARD_COUNT": "2", "HOSTNAME": "queue-svc-2"}, "not below"),
    ],
)
def test_bad_shard_settings_are_refused(env: dict[str, str], says: str) -> None:
    with pytest.raises(InvalidInputError, match=says):
        ShardIdentity.from_env(env)
