"""The storage interface, one Protocol per aggregate; `Store` is their union.

A service annotates what it holds with the aggregates it uses (a media worker needs
`MediaJobStore`, not thirty methods), so a reader sees its reach from its constructor and
a test double, where one is ever needed, stays small. Both adapters implement all of them."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from services.common.store._api_tokens import ApiToken
from services.common.store._dead_letters import WebhookDeadLetterStore
from services.common.store._identity_types import IdentityPair, KnownIdentity
from services.common.store._message_types import (
    AppendResult,
    StoredMessage,
)
from services.common.store._outbox_types import NewOutgoing, OutboxStatus, OutgoingRecord
from services.common.store._types import (
    BotConfig,
    CheckpointOutcome,
    ClaimedJob,
    JobCollection,
    MediaJob,
    NewMediaJob,
    PoolDepth,
)


class BotConfigStore(Protocol):
    """Bots' documents in `bot_configurations`, and queue_svc's registry of active bots."""

    async def get_bot_config(self, bot_id: str) -> BotConfig | None: ...
    async def put_bot_config(self, config: BotConfig) -> None: ...
    async def configured_bots(self) -> list[str]:
        """Every bot id that has a configuration, sorted (the console's bots list)."""

    # queue_svc's registry of active bots, shared by every queue_svc shard
    async def set_bot_active(self, bot_id: str, active: bool) -> bool:
        """Adds `bot_id` to the registry (or removes it) in one atomic update, so shards
        writing at the same time never drop each other's entries. True when this call
        changed the registry."""

    async def active_bots(self) -> list[str]:
        """Every bot id in the registry, sorted."""


class DefinitionsStore(Protocol):
    """The processor definitions document (the media routing table, common/routing.py)."""

    async def get_processor_definitions(self) -> dict[str, Any] | None: ...
    async def put_processor_definitions(self, doc: dict[str, Any]) -> None: ...
    async def seed_processor_definitions(self, doc: dict[str, Any]) -> bool:
        """Insert only if missing; True when this call inserted it."""


class MessageStore(Protocol):
    """Persisted messages (`queues`) and the delivery cursors of named consumers."""

    async def insert_messages(self, messages: Sequence[StoredMessage]) -> int:
        """Idempotent on (bot_id, provider_name, correspondent_id, id); returns the new count."""

    async def append_messages(self, messages: Sequence[StoredMessage]) -> AppendResult:
        """`insert_messages` that also gives every new row its bot's next delivery sequence
        (strictly increasing per bot, derived from the store in the insert's write, so it
        continues after restarts and shard moves; unique per bot) and returns the
        sequences, the existing one for a row that was already stored. `sequence` on the
        input is ignored."""

    async def messages_after(
        self, bot_id: str, after_sequence: int, limit: int = 500
    ) -> list[StoredMessage]:
        """The bot's messages with a sequence above `after_sequence`, ascending, at most
        `limit` (Subscribe's replay pages through it)."""

    async def max_sequence(self, bot_id: str) -> int:
        """The bot's highest delivery sequence; 0 when it has none."""

    # Delivery cursors of named consumers (Subscribe's consumer_name, the webhook relay)
    async def delivery_cursors(self, consumer: str) -> dict[str, int]:
        """bot id → last sequence the consumer has handled."""

    async def advance_cursor(self, consumer: str, bot_id: str, sequence: int) -> bool:
        """Moves the consumer's cursor of the bot forward to `sequence` (never back);
        True when it moved."""

    async def max_message_ids(self, bot_id: str, provider_name: str) -> dict[str, int]: ...
    async def message_history(
        self, bot_id: str, provider_name: str, correspondent_id: str, limit: int = 100
    ) -> list[StoredMessage]:
        """The newest `limit` messages in ascending id order."""

    async def recent_messages(
        self,
        bot_id: str,
        provider_name: str,
        per_correspondent: int,
        since: datetime | None = None,
    ) -> dict[str, list[StoredMessage]]:
        """Every correspondent's newest `per_correspondent` messages (by id) whose
        originating_time is at or after `since`, ascending id order; one query per bot
        (queue_svc refills the windows from it at StartBot)."""

    async def persisted_provider_ids(
        self, bot_id: str, provider_message_ids: Collection[str]
    ) -> set[str]: ...


class MediaJobStore(Protocol):
    """Media jobs in their three collections: active (claimable), holding, failed."""

    async def create_job(self, job: NewMediaJob) -> bool:
        """False (and no change) when the id exists in any of the three collections."""

    async def get_job(self, media_processing_id: str) -> tuple[JobCollection, MediaJob] | None: ...
    async def claim_job(
        self, pools: Sequence[str], worker_id: str, lease_seconds: float
    ) -> ClaimedJob | None:
        """Atomically claim the oldest claimable ACTIVE job of `pools`."""

    async def claim_jobs(
        self, slots: Mapping[str, int], worker_id: str, lease_seconds: float
    ) -> list[ClaimedJob]:
        """Claims up to `slots[pool]` jobs of each pool in one round trip, in claim order
        across the pools (each one is the job `claim_job` of the pools with slots left
        would take next); fewer, or none, when fewer are claimable."""

    async def renew_lease(
        self, media_processing_id: str, token: int, lease_seconds: float
    ) -> bool: ...
    async def complete_job(
        self,
        media_processing_id: str,
        token: int,
        result: str,
        error: str | None = None,
        media_result: str | None = None,
    ) -> JobCollection | None:
        """Persist the result (and its typed values, `MediaJob.media_result`) if the token
        still matches, in ACTIVE else HOLDING."""

    async def release_job(
        self, media_processing_id: str, token: int, error: str, retry_at: datetime
    ) -> bool: ...
    async def checkpoint_job(
        self,
        media_processing_id: str,
        token: int,
        checkpoint: str,
        remaining_delay_ms: int | None = None,
    ) -> CheckpointOutcome:
        """Saves a running job's progress (`MediaJob.checkpoint`) if the token still
        matches. With `remaining_delay_ms` (the claim delay of the work left), in the same
        write: when a pending ACTIVE job of the same pool, claimable now, costs less
        (`claim_delay_ms` below it) and would be claimed before this one re-queued (its
        `claim_at` below now + remaining_delay_ms), this job goes back to pending with
        that `claim_at`, its lease dropped and this claim not counted as an attempt
        (YIELDED). LOST (nothing written) once the claim is not this token's."""

    async def resolve_stale_job(self, media_processing_id: str, result: str, error: str) -> bool:
        """Completes a job that is not completed yet, where it is (ACTIVE or HOLDING), with
        `result` and `error`, and bumps its fence so a worker still holding a claim can no
        longer renew, complete or release it. True when this call changed the job."""

    async def delete_job(self, media_processing_id: str) -> bool: ...
    async def fail_job(
        self, media_processing_id: str, error: str, token: int | None = None
    ) -> bool: ...
    async def move_bot_jobs(
        self, bot_id: str, source: JobCollection, target: JobCollection
    ) -> int: ...
    async def list_jobs(self, bot_id: str, collection: JobCollection) -> list[MediaJob]: ...
    async def list_failed_jobs(
        self, bot_id: str | None = None, limit: int = 100
    ) -> list[MediaJob]: ...
    async def requeue_failed_job(self, media_processing_id: str, target: JobCollection) -> bool: ...
    async def delete_failed_job(self, media_processing_id: str) -> bool:
        """Deletes the job only from FAILED (an operator's delete: a job requeued in the
        meantime is left alone); True when this call deleted it."""

    async def pool_depths(self) -> dict[str, PoolDepth]: ...
    async def jobs_older_than(
        self,
        collection: JobCollection,
        created_before: datetime,
        limit: int = 1000,
        offset: int = 0,
    ) -> list[MediaJob]:
        """Oldest first (created_at, then insertion); `offset` skips that many of them."""

    async def list_completed_jobs(
        self,
        collection: JobCollection,
        updated_before: datetime,
        limit: int = 100,
        offset: int = 0,
    ) -> list[MediaJob]:
        """Completed jobs last changed before `updated_before`, least recently changed
        first (index on status, updated_at), skipping the first `offset`; for media_svc's
        redelivery sweep, which pages past results held for inactive bots."""

    async def pending_routes(self) -> dict[str, str]: ...
    async def set_pool_for_route(
        self, route: str, pool: str, seconds_per_mib: float | None = None
    ) -> int:
        """Points the pending jobs of `route` (ACTIVE and HOLDING) not in `pool` at it;
        how many moved. With `seconds_per_mib` (the new pool's), each moved job's claim
        order is recomputed for that pool (`claim_delay_for_size`, from its arrival)."""

    async def existing_job_ids(self, media_processing_ids: Collection[str]) -> set[str]: ...
    async def wait_for_jobs(self, timeout: float) -> None:  # noqa: ASYNC109 (agreed name)
        """Return early when a job may have become claimable, else after `timeout`."""


class ApiTokenStore(Protocol):
    """Per-bot API tokens (`api_tokens`): the gateway issues, checks and revokes them.
    Only a SHA-256 of each secret is stored."""

    async def create_api_token(self, token: ApiToken) -> bool:
        """False (and no change) when the token id exists already."""

    async def get_api_token(self, token_id: str) -> ApiToken | None: ...
    async def list_api_tokens(self, bot_id: str) -> list[ApiToken]:
        """The bot's tokens, oldest first."""

    async def revoke_api_token(self, bot_id: str, token_id: str) -> bool:
        """Deletes the token if it belongs to `bot_id`; True when this call deleted it."""
class IdentityStore(Protocol):
    """The identity map per bot: which LID and which phone-number JID are one person.
    Written by the queue_svc shard that owns the bot (from message contexts and
    LearnIdentities), read by it at StartBot; shared by every replica through the store."""

    async def learn_identities(
        self, bot_id: str, pairs: Sequence[IdentityPair]
    ) -> list[IdentityPair]:
        """Records, unsettled, each pair whose LID and phone JID are both new for the bot;
        a pair naming a known LID or phone JID (the same pair again, or a conflicting one)
        changes nothing: the first pair recorded wins. Returns the pairs recorded by this
        call, in input order; so of concurrent learners of one pair exactly one gets it."""

    async def identities(self, bot_id: str) -> list[KnownIdentity]:
        """Every pair of the bot, ordered by phone JID."""

    async def settle_identities(self, bot_id: str, phone_jids: Sequence[str]) -> int:
        """Marks the bot's pairs of these phone JIDs settled; how many changed."""


class LeaseStore(Protocol):
    """Named leases: one holder at a time until its ttl runs out (media_svc's sweeps)."""

    async def acquire_lease(self, name: str, holder: str, ttl_seconds: float) -> bool: ...
    async def release_lease(self, name: str, holder: str) -> None: ...
    async def lease_holders(self, prefix: str) -> dict[str, str]:
        """Every unexpired lease whose name starts with `prefix` → its holder (the Node
        servers' membership and which one holds which bot's WhatsApp session)."""


class WhatsAppAuthStore(Protocol):
    """Each bot's Baileys auth state (credentials and signal keys, `lid-mapping`,
    `device-list`, app-state keys …), so a session survives the loss of any Node pod and
    can move to another replica without a new pairing. Values are opaque text (Baileys'
    BufferJSON); `kind` is Baileys' key type, or "creds" for the credentials."""

    async def get_auth_values(
        self, bot_id: str, kind: str, key_ids: Collection[str]
    ) -> dict[str, str]:
        """The stored values of those keys (missing ones are left out)."""

    async def set_auth_values(
        self, bot_id: str, changes: dict[str, dict[str, str | None]]
    ) -> None:
        """Writes {kind: {key_id: value, or None to delete}} in one transaction where the
        store has them (SQLite, a MongoDB replica set); each key atomically otherwise."""

    async def forget_auth(self, bot_id: str) -> int:
        """Deletes the bot's whole auth state (logout); returns the keys deleted."""


class OutboxStore(Protocol):
    """The outgoing-message outbox, keyed by (bot id, the client's idempotency key)."""

    async def enqueue_outgoing(self, item: NewOutgoing) -> tuple[OutgoingRecord, bool]:
        """Stores `item` as pending unless its key exists; returns the stored record
        (without payload) and True when this call inserted it."""

    async def get_outgoing(
        self, bot_id: str, idempotency_key: str, with_payload: bool = False
    ) -> OutgoingRecord | None: ...
    async def pending_outgoing(self, bot_id: str, limit: int = 20) -> list[OutgoingRecord]:
        """The bot's pending records with their payloads, oldest first."""

    async def bots_with_pending_outgoing(self) -> list[str]:
        """Every bot id with at least one pending record, sorted."""

    async def recent_outgoing(self, bot_id: str, limit: int = 20) -> list[OutgoingRecord]:
        """The bot's newest `limit` records in any status with their payloads, newest
        first (the console's conversation view)."""

    async def finish_outgoing(
        self,
        bot_id: str,
        idempotency_key: str,
        status: OutboxStatus,
        provider_message_id: str | None = None,
        reason: str | None = None,
    ) -> bool:
        """Pending → `status` (sent or failed), dropping the payload; True when this
        call changed it (False when unknown or already finished: the first result wins)."""


class MediaUsageStore(Protocol):
    """Bytes of media staged per bot (the media quota), moved only by what a write or a
    delete really did (services/common/media_store/_accounted.py)."""

    async def add_media_usage(self, bot_id: str, delta: int) -> int:
        """Adds `delta` (negative: released) to the bot's staged bytes in one atomic
        write, clamped at 0; returns the new value."""

    async def media_usage(self, bot_id: str) -> int:
        """The bot's staged bytes; 0 for a bot that never staged any."""


@runtime_checkable
class Store(
    BotConfigStore,
    DefinitionsStore,
    MessageStore,
    MediaJobStore,
    LeaseStore,
    WhatsAppAuthStore,
    WebhookDeadLetterStore,
    ApiTokenStore,
    IdentityStore,
    OutboxStore,
    MediaUsageStore,
    Protocol,
):
    """Async storage; SqliteStore and MongoStore implement it and pass one contract suite.

    Datetimes are timezone-aware UTC and read back with millisecond precision.
    """

    async def close(self) -> None:
        """Release connections and threads; safe to call twice."""
