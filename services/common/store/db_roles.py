"""Least privilege on MongoDB: the collections each service may read or write.

One MongoDB role and one user per service (`provision.py` creates them from this table;
the deployment gives each service its own MONGODB_URI with its user). The process that
parses hostile media (media_svc) can read but never write `bot_configurations`, so it
cannot change any bot's webhook; it writes only the media jobs, the leases, the media
bytes it deletes after delivery and their per-bot counter.

A collection the store uses but no role names is refused by the tests
(tests/deploy/test_least_privilege.py reads the store's collections): a new collection is
added here with the roles that need it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from services.common.store._types import JobCollection

READ_ACTIONS = ("find",)
WRITE_ACTIONS = ("find", "insert", "update", "remove", "createIndex")
WATCH_ACTIONS = ("find", "changeStream")
# Actions that change data or a collection's shape (what "write" means for a role).
MUTATING_ACTIONS = frozenset(
    {"insert", "update", "remove", "createIndex", "dropIndex", "dropCollection", "createCollection"}
)

JOBS = tuple(c.collection_name for c in JobCollection)
ACTIVE_JOBS = JobCollection.ACTIVE.collection_name
# The GridFS bucket of media bytes (services/common/media_store/_gridfs.py).
MEDIA_BYTES = ("media.files", "media.chunks")


@dataclass(frozen=True)
class RoleAccess:
    """What one service may do: read some collections, write (and index) others, and
    watch some with a change stream."""

    reads: frozenset[str] = field(default_factory=frozenset)
    writes: frozenset[str] = field(default_factory=frozenset)
    watches: frozenset[str] = field(default_factory=frozenset)

    def actions(self, collection: str) -> set[str]:
        found: set[str] = set()
        if collection in self.reads:
            found.update(READ_ACTIONS)
        if collection in self.writes:
            found.update(WRITE_ACTIONS)
        if collection in self.watches:
            found.update(WATCH_ACTIONS)
        return found

    @property
    def collections(self) -> frozenset[str]:
        return self.reads | self.writes | self.watches

    def privileges(self, database: str) -> list[dict[str, Any]]:
        """The role's privileges as createRole takes them."""
        return [
            {
                "resource": {"db": database, "collection": collection},
                "actions": sorted(self.actions(collection)),
            }
            for collection in sorted(self.collections)
        ]


def _access(
    reads: tuple[str, ...] = (), writes: tuple[str, ...] = (), watches: tuple[str, ...] = ()
) -> RoleAccess:
    return RoleAccess(frozenset(reads), frozenset(writes), frozenset(watches))


# `store_migrations` is read at every start (the one-time backfill markers, written by
# the provisioning run as the administrator); `leases` holds the health probe's lease.
ROLES: dict[str, RoleAccess] = {
    # Bot configurations and tokens through the lifecycle API; the last delivery
    # sequence (a new webhook's starting point).
    # For the Node servers (they hold no database connection): their Baileys auth state
    # and their membership/session leases; the webhook dead letters operators retry or skip.
    # The console's views and actions: the jobs (pools, in flight, failed) and the
    # operator's requeue (failed → active or holding) and delete of a failed job.
    "gateway": _access(
        reads=("queues", "store_migrations"),
        writes=(
            *JOBS,
            "bot_configurations",
            "api_tokens",
            "leases",
            "whatsapp_auth",
            "webhook_dead_letters",
            # The outgoing-message outbox (MongoDB keeps large payloads in chunks).
            "outbox",
            "outbox_payloads",
            # Media bytes Node stages through the gateway (MEDIA_STORE=gridfs) and each
            # bot's staged-byte counter (the quota).
            *MEDIA_BYTES,
            "media_usage",
        ),
    ),
    # The queues and their sequences, Subscribe's cursors, the identity map, the registry
    # of active bots and the definitions seed (both in bot_configurations), the jobs' moves.
    "queue_svc": _access(
        reads=("store_migrations",),
        writes=(
            "bot_configurations",
            "queues",
            "queue_sequences",
            "delivery_cursors",
            "leases",
            # The identity map (LID <-> phone JID per bot): only the owning shard writes it.
            "identities",
            *JOBS,
        ),
    ),
    # The jobs it claims and completes, its sweeps' leases; the definitions it runs.
    "media_svc": _access(
        reads=("bot_configurations", "store_migrations"),
        # Media bytes: read, then deleted after delivery (releasing the bot's bytes).
        writes=(*JOBS, "leases", *MEDIA_BYTES, "media_usage"),
        watches=(ACTIVE_JOBS,),
    ),
    # Its own delivery cursors and dead letters; the messages it replays and the webhook
    # it posts to; the leases that share the bots among relay replicas.
    "relay": _access(
        reads=("bot_configurations", "queues", "store_migrations"),
        writes=("delivery_cursors", "webhook_dead_letters", "leases"),
    ),
}


def role_name(service: str) -> str:
    return f"chatbot_{service}"


def password_variable(service: str) -> str:
    """The environment variable holding the service user's password for provisioning."""
    return f"MONGODB_PASSWORD_{service.upper()}"
