"""Which queue_svc shard serves a bot (SPEC §12: queue_svc state is per bot).

Every caller (gateway, media_svc, the bot logic) and every queue_svc replica computes
the same map by rendezvous (highest random weight) hashing: each shard `i` gets the
weight `blake2b("<i>:<bot_id>")` (first 8 bytes, big-endian) and the bot goes to the
heaviest. The hash is fixed by its standard and does not depend on the process (unlike
`hash()`, which is salted per run), so the map never changes while the count stays the
same; and a shard's weights do not depend on the count, so going from N to N+1 shards
moves only the bots the new shard wins (about 1/(N+1) of them), all onto the new shard,
and going down moves only the removed shard's bots.

Changing the count online: `python -m services.common.resize` (README.md "Resizing
queue_svc") stops each moving bot on its old shard and starts it on its new one.
Bots that were active when their replica stopped are resumed by the replica that owns
them under the current count (the registry of active bots is shared by all shards).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass

from services.common.errors import InvalidInputError

ADDRESS_VARIABLE = "QUEUE_SVC_ADDRESS"
SHARD_VARIABLE = "QUEUE_SVC_SHARD"
SHARD_COUNT_VARIABLE = "QUEUE_SVC_SHARD_COUNT"
DEFAULT_ADDRESS = "127.0.0.1:50051"

_SHARD_SPEC = re.compile(r"^(\d+)/(\d+)$")
# A StatefulSet pod is named `<set>-<ordinal>`; the ordinal is its shard index.
_POD_ORDINAL = re.compile(r"-(\d+)$")


def shard_weight(bot_id: str, shard: int) -> int:
    """The rendezvous weight of `shard` for `bot_id` (independent of the shard count)."""
    digest = hashlib.blake2b(f"{shard}:{bot_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def shard_of(bot_id: str, shard_count: int) -> int:
    """The index (0-based) of the shard that serves `bot_id` among `shard_count`."""
    if shard_count < 1:
        raise InvalidInputError(f"the shard count must be >= 1, got {shard_count}")
    if shard_count == 1:
        return 0
    # Ties (a 64-bit collision) go to the lower index, the same in every process.
    return max(range(shard_count), key=lambda shard: (shard_weight(bot_id, shard), -shard))


@dataclass(frozen=True, slots=True)
class ShardAddresses:
    """The queue_svc shards' addresses in shard order (entry i serves shard i)."""

    addresses: tuple[str, ...] = (DEFAULT_ADDRESS,)

    def __post_init__(self) -> None:
        if not self.addresses:
            raise InvalidInputError(
                f"{ADDRESS_VARIABLE} must list at least one queue_svc address (host:port)"
            )
        for position, address in enumerate(self.addresses, start=1):
            if not address or address != address.strip():
                raise InvalidInputError(
                    f"{ADDRESS_VARIABLE}: entry {position} is empty; give one host:port per "
                    f"shard separated by commas, e.g. {DEFAULT_ADDRESS}"
                )
            if ":" not in address:
                raise InvalidInputError(
                    f"{ADDRESS_VARIABLE}: entry {position} must be host:port "
                    f"(e.g. {DEFAULT_ADDRESS}), got {address!r}"
                )
        if len(set(self.addresses)) != len(self.addresses):
            repeated = sorted({a for a in self.addresses if self.addresses.count(a) > 1})
            raise InvalidInputError(
                f"{ADDRESS_VARIABLE} lists {', '.join(repeated)} more than once; each shard "
                "needs its own queue_svc (one address per shard, in shard order)"
            )

    @classmethod
    def parse(cls, text: str) -> ShardAddresses:
        """A comma-separated list in shard order; blank means the one default address."""
        if not text.strip():
            return cls()
        return cls(tuple(part.strip() for part in text.split(",")))

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ShardAddresses:
        return cls.parse(env.get(ADDRESS_VARIABLE, ""))

    @property
    def count(self) -> int:
        return len(self.addresses)

    def index_for(self, bot_id: str) -> int:
        return shard_of(bot_id, self.count)

    def address_for(self, bot_id: str) -> str:
        return self.addresses[self.index_for(bot_id)]


@dataclass(frozen=True, slots=True)
class ShardIdentity:
    """The shard one queue_svc replica serves: `index` of `count`."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise InvalidInputError(
                f"{SHARD_VARIABLE} must be <index>/<count> with 0 <= index < count, "
                f"got {self.index}/{self.count}"
            )

    def owns(self, bot_id: str) -> bool:
        return shard_of(bot_id, self.count) == self.index

    def owner_of(self, bot_id: str) -> int:
        return shard_of(bot_id, self.count)

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    @classmethod
    def parse(cls, text: str) -> ShardIdentity:
        match = _SHARD_SPEC.match(text.strip())
        if match is None:
            raise InvalidInputError(
                f"{SHARD_VARIABLE} must be <index>/<count>, e.g. 0/1 or 1/2, got {text!r}"
            )
        return cls(int(match[1]), int(match[2]))

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ShardIdentity:
        """QUEUE_SVC_SHARD ("<index>/<count>", default 0/1); or, in a StatefulSet,
        QUEUE_SVC_SHARD_COUNT with the index taken from HOSTNAME's trailing `-<n>`."""
        spec = env.get(SHARD_VARIABLE, "").strip()
        count_text = env.get(SHARD_COUNT_VARIABLE, "").strip()
        if spec:
            shard = cls.parse(spec)
            if count_text and count_text != str(shard.count):
                raise InvalidInputError(
                    f"{SHARD_VARIABLE}={spec} disagrees with {SHARD_COUNT_VARIABLE}="
                    f"{count_text}; set only one of them"
                )
            return shard
        if not count_text:
            return cls()
        if not count_text.isdigit() or int(count_text) < 1:
            raise InvalidInputError(
                f"{SHARD_COUNT_VARIABLE} must be an integer >= 1, got {count_text!r}"
            )
        hostname = env.get("HOSTNAME", "").strip()
        ordinal = _POD_ORDINAL.search(hostname)
        if ordinal is None:
            raise InvalidInputError(
                f"{SHARD_COUNT_VARIABLE} is set but HOSTNAME={hostname!r} does not end in "
                f"-<ordinal> (a StatefulSet pod name); set {SHARD_VARIABLE}=<index>/<count>"
            )
        index, count = int(ordinal[1]), int(count_text)
        if index >= count:
            raise InvalidInputError(
                f"pod ordinal {index} (HOSTNAME={hostname!r}) is not below "
                f"{SHARD_COUNT_VARIABLE}={count}; make the StatefulSet's replicas equal "
                f"{SHARD_COUNT_VARIABLE} and the length of {ADDRESS_VARIABLE}"
            )
        return cls(index, count)
