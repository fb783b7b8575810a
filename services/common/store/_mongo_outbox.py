"""The MongoDB adapter's outgoing-message outbox (`OutboxStore`).

A media message may carry up to 16 MiB, as much as a whole BSON document, so payloads
live in `outbox_payloads` in chunks under a fresh payload id, written before the record:
the record's insert (unique on bot id and key) is the commit point. A caller that loses
the race for a key deletes its own chunks; a finished record's chunks are deleted after
it leaves `pending`, so a crash in between leaves unreferenced chunks, never a record
without its payload (a pending record whose chunks are gone is skipped, not sent half).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from bson.binary import Binary
from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError, OperationFailure

from services.common.store import _rules as rules
from services.common.store._mongo_base import Doc, MongoBase, _now
from services.common.store._outbox_types import (
    NewOutgoing,
    OutboxStatus,
    OutgoingRecord,
    check_finish,
    check_key,
    check_new,
)

#: Well below the 16 MiB document limit, with room for the chunk's other fields.
CHUNK_BYTES = 4 * 1024 * 1024
_UNAUTHORIZED = 13
_FIELDS: tuple[str, ...] = (
    "bot_id",
    "idempotency_key",
    "correspondent_id",
    "kind",
    "request_hash",
    "status",
    "provider_message_id",
    "reason",
    "created_at",
    "updated_at",
)


def _record(doc: Mapping[str, Any], payload: bytes | None = None) -> OutgoingRecord:
    values: dict[str, Any] = {name: doc.get(name) for name in _FIELDS}
    values["status"] = OutboxStatus(values["status"])
    return OutgoingRecord(**values, payload=payload)


class MongoOutbox(MongoBase):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Attributes, like every collection of the store: db_roles' test lists them.
        self._outbox: AsyncCollection[Doc] = self._configs.database["outbox"]
        self._payloads: AsyncCollection[Doc] = self._configs.database["outbox_payloads"]

    async def _create_indexes(self) -> None:
        await super()._create_indexes()
        try:
            await self._outbox.create_indexes(
                [
                    IndexModel([("bot_id", 1), ("idempotency_key", 1)], unique=True, name="key"),
                    # The console's newest records of a bot, in any status.
                    IndexModel([("bot_id", 1), ("created_at", -1), ("_id", -1)], name="recent"),
                    IndexModel(
                        [("bot_id", 1), ("created_at", 1), ("_id", 1)],
                        name="pending",
                        partialFilterExpression={"status": "pending"},
                    ),
                ]
            )
            await self._payloads.create_index([("payload_id", 1), ("n", 1)], name="chunks")
        except OperationFailure as exc:
            # A service whose database user may not touch the outbox (only the gateway
            # uses it) leaves its indexes to the gateway or the provisioning run.
            if exc.code != _UNAUTHORIZED:
                raise

    async def _store_payload(self, payload: bytes) -> str:
        payload_id = str(uuid.uuid4())
        chunks = [
            {"payload_id": payload_id, "n": n, "data": Binary(payload[start : start + CHUNK_BYTES])}
            for n, start in enumerate(range(0, len(payload), CHUNK_BYTES))
        ]
        await self._payloads.insert_many(chunks)
        return payload_id

    async def _load_payload(self, doc: Mapping[str, Any]) -> bytes | None:
        cursor = self._payloads.find({"payload_id": doc.get("payload_id")}).sort("n", ASCENDING)
        parts = [bytes(chunk["data"]) async for chunk in cursor]
        if len(parts) != doc.get("payload_chunks"):
            return None
        return b"".join(parts)

    async def enqueue_outgoing(self, item: NewOutgoing) -> tuple[OutgoingRecord, bool]:
        check_new(item)
        key = {"bot_id": item.bot_id, "idempotency_key": item.idempotency_key}
        existing = await self._outbox.find_one(key)
        if existing is not None:
            return _record(existing), False
        payload_id = await self._store_payload(item.payload)
        now = _now()
        doc: Doc = {
            **key,
            "correspondent_id": item.correspondent_id,
            "kind": item.kind,
            "request_hash": item.request_hash,
            "status": str(OutboxStatus.PENDING),
            "provider_message_id": None,
            "reason": None,
            "created_at": now,
            "updated_at": now,
            "payload_id": payload_id,
            "payload_chunks": (len(item.payload) + CHUNK_BYTES - 1) // CHUNK_BYTES,
        }
        try:
            await self._outbox.insert_one(doc)
        except DuplicateKeyError:
            await self._payloads.delete_many({"payload_id": payload_id})
            winner = await self._outbox.find_one(key)
            if winner is None:  # pragma: no cover - records are never deleted
                raise
            return _record(winner), False
        return _record(doc), True

    async def get_outgoing(
        self, bot_id: str, idempotency_key: str, with_payload: bool = False
    ) -> OutgoingRecord | None:
        check_key(bot_id, idempotency_key)
        doc = await self._outbox.find_one({"bot_id": bot_id, "idempotency_key": idempotency_key})
        if doc is None:
            return None
        payload = await self._load_payload(doc) if with_payload else None
        return _record(doc, payload)

    async def pending_outgoing(self, bot_id: str, limit: int = 20) -> list[OutgoingRecord]:
        rules.check_page(limit)
        if limit == 0:
            return []
        cursor = (
            self._outbox.find({"bot_id": bot_id, "status": "pending"})
            .sort([("created_at", ASCENDING), ("_id", ASCENDING)])
            .limit(limit)
        )
        found: list[OutgoingRecord] = []
        async for doc in cursor:
            payload = await self._load_payload(doc)
            if payload is not None:
                found.append(_record(doc, payload))
        return found

    async def recent_outgoing(self, bot_id: str, limit: int = 20) -> list[OutgoingRecord]:
        rules.check_page(limit)
        if limit == 0:
            return []
        cursor = (
            self._outbox.find({"bot_id": bot_id})
            .sort([("created_at", DESCENDING), ("_id", DESCENDING)])
            .limit(limit)
        )
        # A sent or failed record's payload is dropped: it reads as None.
        return [_record(doc, await self._load_payload(doc)) async for doc in cursor]

    async def bots_with_pending_outgoing(self) -> list[str]:
        bots = await self._outbox.distinct("bot_id", {"status": "pending"})
        return sorted(str(bot) for bot in bots)

    async def finish_outgoing(
        self,
        bot_id: str,
        idempotency_key: str,
        status: OutboxStatus,
        provider_message_id: str | None = None,
        reason: str | None = None,
    ) -> bool:
        check_key(bot_id, idempotency_key)
        check_finish(status, reason)
        doc = await self._outbox.find_one_and_update(
            {"bot_id": bot_id, "idempotency_key": idempotency_key, "status": "pending"},
            {
                "$set": {
                    "status": str(status),
                    "provider_message_id": provider_message_id,
                    "reason": reason,
                    "updated_at": _now(),
                }
            },
        )
        if doc is None:
            return False
        await self._payloads.delete_many({"payload_id": doc.get("payload_id")})
        return True
