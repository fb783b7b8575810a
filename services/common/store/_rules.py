"""The rules both store adapters follow, written once so they cannot drift: argument
checks, reserved ids, paging, and the fields a requeue resets.

Every check raises InvalidInputError before the adapter touches the database, so bad
input changes no state on either adapter."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import TypeVar

from services.common.errors import InvalidInputError
from services.common.store._types import (
    ACTIVE_BOTS_DOCUMENT_ID,
    DEFINITIONS_DOCUMENT_ID,
    MAX_CLAIM_DELAY_MS,
    JobCollection,
    JobStatus,
    require_json_object,
)

_T = TypeVar("_T")

# Documents of `bot_configurations` that are not bots.
RESERVED_IDS = frozenset({DEFINITIONS_DOCUMENT_ID, ACTIVE_BOTS_DOCUMENT_ID})


def check_writable_bot_id(bot_id: str) -> None:
    """put_bot_config must not overwrite a pseudo document."""
    if bot_id in RESERVED_IDS:
        raise InvalidInputError(f"bot_id {bot_id!r} is reserved")


def check_active_bot_id(bot_id: str) -> None:
    if not bot_id:
        raise InvalidInputError("set_bot_active needs a non-empty bot_id")


def check_page(limit: int, offset: int = 0) -> None:
    """Paging arguments both adapters refuse alike (SQLite reads LIMIT -1 as no limit)."""
    if limit < 0:
        raise InvalidInputError(f"limit must be >= 0, got {limit}")
    if offset < 0:
        raise InvalidInputError(f"offset must be >= 0, got {offset}")


def check_per_correspondent(per_correspondent: int) -> None:
    if per_correspondent < 0:
        raise InvalidInputError(f"per_correspondent must be >= 0, got {per_correspondent}")


def check_consumer(consumer: str, bot_id: str, sequence: int) -> None:
    """The arguments of `advance_cursor`."""
    if not consumer or not bot_id:
        raise InvalidInputError("a delivery cursor needs a non-empty consumer and bot_id")
    if isinstance(sequence, bool) or not isinstance(sequence, int) or sequence < 0:
        raise InvalidInputError(f"a delivery cursor must be an integer >= 0, got {sequence!r}")


def check_seconds(seconds: float, what: str) -> float:
    """A lease or ttl length; returned so an adapter converts it in the same expression."""
    if not seconds > 0:
        raise InvalidInputError(f"{what} must be > 0 seconds, got {seconds!r}")
    return seconds


def check_checkpoint(checkpoint: str, remaining_delay_ms: int | None) -> None:
    """A checkpoint is a JSON object; the delay of the work left is a claim delay."""
    require_json_object(checkpoint, "checkpoint")
    if remaining_delay_ms is None:
        return
    if (
        isinstance(remaining_delay_ms, bool)
        or not isinstance(remaining_delay_ms, int)
        or not 0 <= remaining_delay_ms <= MAX_CLAIM_DELAY_MS
    ):
        raise InvalidInputError(
            f"remaining_delay_ms must be from 0 to {MAX_CLAIM_DELAY_MS}, got {remaining_delay_ms!r}"
        )


def claim_pools(pools: Sequence[str]) -> list[str]:
    """The pools of a claim without repeats, in the caller's order."""
    unique = list(dict.fromkeys(pools))
    if not unique:
        raise InvalidInputError("claim_job needs at least one pool")
    return unique


def claim_slots(slots: Mapping[str, int]) -> dict[str, int]:
    """The slots of a batch claim: at least one pool, each with a whole number >= 1."""
    if not slots:
        raise InvalidInputError("claim_jobs needs at least one pool")
    for pool, count in slots.items():
        if not pool or not isinstance(pool, str):
            raise InvalidInputError(f"claim_jobs: pool names are non-empty strings, got {pool!r}")
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise InvalidInputError(f"claim_jobs: slots of {pool} must be an integer >= 1")
    return dict(slots)


def check_bot_move(source: JobCollection, target: JobCollection) -> None:
    """StartBot and StopBot move a bot's jobs between active and holding, nowhere else."""
    if {source, target} != {JobCollection.ACTIVE, JobCollection.HOLDING}:
        raise InvalidInputError(
            f"move_bot_jobs moves between active and holding only, not {source} → {target}"
        )


def check_requeue_target(target: JobCollection) -> None:
    if target is JobCollection.FAILED:
        raise InvalidInputError("requeue_failed_job moves to active or holding, not failed")


def check_route_pool(pool: str, seconds_per_mib: float | None = None) -> None:
    if not pool:
        raise InvalidInputError("set_pool_for_route: pool must not be empty")
    if seconds_per_mib is not None and (
        isinstance(seconds_per_mib, bool)
        or not isinstance(seconds_per_mib, int | float)
        or not 0 <= seconds_per_mib <= 3600
    ):
        raise InvalidInputError(
            f"set_pool_for_route: seconds_per_mib must be from 0 to 3600, got {seconds_per_mib!r}"
        )


def check_lease_names(name: str, holder: str) -> None:
    if not name or not holder:
        raise InvalidInputError("acquire_lease needs a non-empty name and holder")


def requeue_reset(now: _T) -> dict[str, object]:
    """The fields a requeued failed job starts again with: pending, no attempts, no claim,
    no result, claimable `now` (in the adapter's own time representation)."""
    return {
        "status": JobStatus.PENDING.value,
        "attempts": 0,
        "claimed_by": None,
        "lease_expires_at": None,
        "available_at": now,
        "result": None,
        "media_result": None,
        "error": None,
        "updated_at": now,
        "failed_at": None,
    }


# Baileys' key types are short lower-case words with dashes ("pre-key", "lid-mapping").
_AUTH_KIND = re.compile(r"^[a-z][a-z0-9-]{0,63}$")
# The same rule as the gateway's API document states it (a JSON Schema pattern).
AUTH_KIND_PATTERN = _AUTH_KIND.pattern
AUTH_KEY_ID_MAX = 512
# The largest value Baileys writes is an app-state sync version or a session record
# (tens of KiB); 1 MiB bounds a bad writer without refusing a real one.
AUTH_VALUE_MAX = 1 << 20


def check_auth_keys(bot_id: str, kind: str, key_ids: Iterable[str]) -> None:
    if not bot_id or len(bot_id) > 128:
        raise InvalidInputError("auth state: bot_id must be 1-128 characters")
    if not _AUTH_KIND.match(kind):
        raise InvalidInputError(f"auth state: key kind {kind[:80]!r} is not a Baileys key type")
    for key_id in key_ids:
        if not isinstance(key_id, str) or len(key_id) > AUTH_KEY_ID_MAX:
            raise InvalidInputError(
                f"auth state: key ids are strings of at most {AUTH_KEY_ID_MAX} characters"
            )


def check_auth_changes(bot_id: str, changes: Mapping[str, Mapping[str, str | None]]) -> None:
    for kind, values in changes.items():
        check_auth_keys(bot_id, kind, values.keys())
        for value in values.values():
            if value is not None and (not isinstance(value, str) or len(value) > AUTH_VALUE_MAX):
                raise InvalidInputError(
                    f"auth state: values are text of at most {AUTH_VALUE_MAX} characters"
                )
