"""The MongoDB adapter's media jobs (`MediaJobStore`). Claims are one
`find_one_and_update` (sorted, ReturnDocument.AFTER) on the claim index."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from pymongo import (
    ASCENDING,
    DESCENDING,
    ReturnDocument,
)

from services.common.store import _rules as rules
from services.common.store._adapter_base import JobPage, JobPagesBase
from services.common.store._mongo_base import (
    _LIVE,
    Doc,
    Session,
    _job,
    _now,
    _seconds,
)
from services.common.store._mongo_job_moves import MongoJobMoves
from services.common.store._types import (
    CheckpointOutcome,
    ClaimedJob,
    JobCollection,
    JobStatus,
    MediaJob,
    PoolDepth,
    claim_delay_for_size,
    require_json_object,
    to_millis,
    truncate_to_millis,
)


class MongoJobs(MongoJobMoves, JobPagesBase):
    """`MediaJobStore` on the MongoDB database."""

    async def claim_job(
        self, pools: Sequence[str], worker_id: str, lease_seconds: float
    ) -> ClaimedJob | None:
        unique_pools = rules.claim_pools(pools)
        lease = _seconds(lease_seconds, "lease_seconds")
        now = _now()
        doc = await self._jobs[JobCollection.ACTIVE].find_one_and_update(
            {
                "$or": [
                    {
                        "status": JobStatus.PENDING.value,
                        "pool": {"$in": unique_pools},
                        "available_at": {"$lte": now},
                    },
                    {
                        "status": JobStatus.PROCESSING.value,
                        "pool": {"$in": unique_pools},
                        "lease_expires_at": {"$lt": now},
                    },
                ]
            },
            {
                "$set": {
                    "status": JobStatus.PROCESSING.value,
                    "claimed_by": worker_id,
                    "lease_expires_at": now + lease,
                    "updated_at": now,
                },
                "$inc": {"attempts": 1, "fence": 1, "version": 1},
            },
            sort=[("claim_at", ASCENDING), ("created_ns", ASCENDING)],
            return_document=ReturnDocument.AFTER,
        )
        if doc is None:
            return None
        job = _job(doc)
        return ClaimedJob(job=job, token=job.fence)

    async def claim_jobs(
        self, slots: Mapping[str, int], worker_id: str, lease_seconds: float
    ) -> list[ClaimedJob]:
        # One find_one_and_update per job (MongoDB updates one sorted document at a
        # time): the claim order and the atomicity of each claim are claim_job's.
        left = rules.claim_slots(slots)
        _seconds(lease_seconds, "lease_seconds")
        claimed: list[ClaimedJob] = []
        while left:
            one = await self.claim_job(list(left), worker_id, lease_seconds)
            if one is None:
                break
            claimed.append(one)
            left[one.job.pool] -= 1
            if not left[one.job.pool]:
                del left[one.job.pool]
        return claimed

    async def renew_lease(self, media_processing_id: str, token: int, lease_seconds: float) -> bool:
        lease = _seconds(lease_seconds, "lease_seconds")
        now = _now()
        where = await self._update_live(
            {"_id": media_processing_id, "status": JobStatus.PROCESSING.value, "fence": token},
            {"$set": {"lease_expires_at": now + lease, "updated_at": now}},
        )
        return where is not None

    async def complete_job(
        self,
        media_processing_id: str,
        token: int,
        result: str,
        error: str | None = None,
        media_result: str | None = None,
    ) -> JobCollection | None:
        if media_result is not None:
            require_json_object(media_result, "media_result")
        return await self._update_live(
            {"_id": media_processing_id, "status": JobStatus.PROCESSING.value, "fence": token},
            {
                "$set": {
                    "status": JobStatus.COMPLETED.value,
                    "result": result,
                    "error": error,
                    "media_result": media_result,
                    "updated_at": _now(),
                }
            },
        )

    async def release_job(
        self, media_processing_id: str, token: int, error: str, retry_at: datetime
    ) -> bool:
        to_millis(retry_at, "retry_at")
        where = await self._update_live(
            {"_id": media_processing_id, "status": JobStatus.PROCESSING.value, "fence": token},
            {
                "$set": {
                    "status": JobStatus.PENDING.value,
                    "error": error,
                    "available_at": truncate_to_millis(retry_at),
                    "claimed_by": None,
                    "lease_expires_at": None,
                    "updated_at": _now(),
                }
            },
        )
        if where is not None:
            self._wake()
        return where is not None

    async def checkpoint_job(
        self,
        media_processing_id: str,
        token: int,
        checkpoint: str,
        remaining_delay_ms: int | None = None,
    ) -> CheckpointOutcome:
        rules.check_checkpoint(checkpoint, remaining_delay_ms)
        held = {"_id": media_processing_id, "status": JobStatus.PROCESSING.value, "fence": token}
        where = await self._update_live(
            held, {"$set": {"checkpoint": checkpoint, "updated_at": _now()}}
        )
        if where is None:
            return CheckpointOutcome.LOST
        if remaining_delay_ms is None or where is not JobCollection.ACTIVE:
            # A held job (its bot stopped meanwhile) is claimed by nobody else.
            return CheckpointOutcome.KEPT
        active = self._jobs[JobCollection.ACTIVE]
        own = await active.find_one(held, {"pool": 1})
        if own is None:
            return CheckpointOutcome.LOST
        now = _now()
        claim_at = now + timedelta(milliseconds=remaining_delay_ms)
        # Not atomic with the save: a race only makes this yield once too often or too
        # rarely; the fence keeps the yield itself to this claim.
        cheaper = await active.find_one(
            {
                "status": JobStatus.PENDING.value,
                "pool": own["pool"],
                "claim_at": {"$lt": claim_at},
                "available_at": {"$lte": now},
                "claim_delay_ms": {"$lt": remaining_delay_ms},
            },
            {"_id": 1},
        )
        if cheaper is None:
            return CheckpointOutcome.KEPT
        result = await active.update_one(
            held,
            {
                "$set": {
                    "status": JobStatus.PENDING.value,
                    "available_at": now,
                    "claim_at": claim_at,
                    "claimed_by": None,
                    "lease_expires_at": None,
                    "updated_at": now,
                },
                "$inc": {"attempts": -1, "version": 1},
            },
        )
        if not result.matched_count:
            return CheckpointOutcome.LOST
        self._wake()
        return CheckpointOutcome.YIELDED

    async def resolve_stale_job(self, media_processing_id: str, result: str, error: str) -> bool:
        where = await self._update_live(
            {"_id": media_processing_id, "status": {"$ne": JobStatus.COMPLETED.value}},
            {
                "$set": {
                    "status": JobStatus.COMPLETED.value,
                    "result": result,
                    "error": error,
                    "claimed_by": None,
                    "lease_expires_at": None,
                    "updated_at": _now(),
                },
                "$inc": {"fence": 1},
            },
        )
        return where is not None

    async def delete_failed_job(self, media_processing_id: str) -> bool:
        result = await self._jobs[JobCollection.FAILED].delete_one({"_id": media_processing_id})
        return bool(result.deleted_count)

    async def delete_job(self, media_processing_id: str) -> bool:
        async def delete(session: Session) -> bool:
            deleted = False
            for collection in _LIVE:
                # Every copy: mid-move (standalone server) the job can be in both.
                result = await self._jobs[collection].delete_one(
                    {"_id": media_processing_id}, session=session
                )
                deleted = deleted or bool(result.deleted_count)
            return deleted

        if self._transactions:
            # Moves are atomic here: a job deleted from active was nowhere else.
            active = self._jobs[JobCollection.ACTIVE]
            if (await active.delete_one({"_id": media_processing_id})).deleted_count:
                return True
            return await self._in_transaction(delete)
        return await self._consistently(media_processing_id, lambda: delete(None), bool)

    async def fail_job(
        self, media_processing_id: str, error: str, token: int | None = None
    ) -> bool:
        query: Doc = {"_id": media_processing_id}
        if token is not None:
            query.update(status=JobStatus.PROCESSING.value, fence=token)

        def failed(doc: Doc) -> Doc:
            now = _now()
            return {**doc, "error": error, "failed_at": now, "updated_at": now}

        async def fail(session: Session) -> bool:
            for n, collection in enumerate(_LIVE):
                if n:
                    await self._step("fail_job")
                if await self._move(collection, JobCollection.FAILED, query, failed, session):
                    return True
            return False

        if self._transactions:
            return await self._in_transaction(fail)
        return await self._consistently(media_processing_id, lambda: fail(None), bool)

    async def move_bot_jobs(self, bot_id: str, source: JobCollection, target: JobCollection) -> int:
        rules.check_bot_move(source, target)
        ids = [
            doc["_id"]
            async for doc in self._jobs[source]
            .find({"bot_id": bot_id}, {"_id": 1})
            .sort([("created_at", ASCENDING), ("created_ns", ASCENDING)])
        ]
        moved = 0
        for job_id in ids:
            # One transaction per job: a bot's jobs can exceed what one transaction holds.
            if await self._move_in_transaction(source, target, {"_id": job_id, "bot_id": bot_id}):
                moved += 1
        if moved and target is JobCollection.ACTIVE:
            self._wake()
        return moved

    async def list_jobs(self, bot_id: str, collection: JobCollection) -> list[MediaJob]:
        cursor = (
            self._jobs[collection]
            .find({"bot_id": bot_id})
            .sort([("created_at", ASCENDING), ("created_ns", ASCENDING)])
        )
        return [_job(doc) async for doc in cursor]

    async def list_failed_jobs(self, bot_id: str | None = None, limit: int = 100) -> list[MediaJob]:
        rules.check_page(limit)
        if limit == 0:  # PyMongo reads limit(0) as no limit
            return []
        query: Doc = {} if bot_id is None else {"bot_id": bot_id}
        cursor = (
            self._jobs[JobCollection.FAILED]
            .find(query)
            .sort([("failed_at", DESCENDING), ("created_ns", DESCENDING)])
            .limit(limit)
        )
        return [_job(doc) async for doc in cursor]

    async def requeue_failed_job(self, media_processing_id: str, target: JobCollection) -> bool:
        rules.check_requeue_target(target)

        def requeued(doc: Doc) -> Doc:
            return {**doc, **rules.requeue_reset(_now())}

        moved = await self._move_in_transaction(
            JobCollection.FAILED, target, {"_id": media_processing_id}, requeued
        )
        if moved and target is JobCollection.ACTIVE:
            self._wake()
        return moved

    async def pool_depths(self) -> dict[str, PoolDepth]:
        cursor = await self._jobs[JobCollection.ACTIVE].aggregate(
            [
                {
                    "$match": {
                        "status": {"$in": [JobStatus.PENDING.value, JobStatus.PROCESSING.value]}
                    }
                },
                {
                    "$group": {
                        "_id": {"pool": "$pool", "status": "$status"},
                        "count": {"$sum": 1},
                        "oldest": {"$min": "$created_at"},
                    }
                },
            ]
        )
        counts: dict[str, list[Any]] = {}
        async for row in cursor:
            entry = counts.setdefault(row["_id"]["pool"], [0, 0, None])
            if row["_id"]["status"] == JobStatus.PENDING.value:
                entry[0], entry[2] = row["count"], row["oldest"]
            else:
                entry[1] = row["count"]
        return {pool: PoolDepth(e[0], e[1], e[2]) for pool, e in counts.items()}

    async def _jobs_page(self, page: JobPage) -> list[MediaJob]:
        # page.limit > 0 here: MongoDB would read limit(0) as "no limit".
        field = "updated_at" if page.completed else "created_at"
        query: Doc = {field: {"$lt": page.before}}
        if page.completed:
            query["status"] = JobStatus.COMPLETED.value
        cursor = (
            self._jobs[page.collection]
            .find(query)
            .sort([(field, ASCENDING), ("created_ns", ASCENDING)])
            .skip(page.offset)
            .limit(page.limit)
        )
        return [_job(doc) async for doc in cursor]

    async def pending_routes(self) -> dict[str, str]:
        routes: dict[str, str] = {}
        for collection in _LIVE:
            cursor = await self._jobs[collection].aggregate(
                [
                    {"$match": {"status": JobStatus.PENDING.value}},
                    {"$group": {"_id": {"route": "$route", "pool": "$pool"}}},
                ]
            )
            async for row in cursor:
                routes[row["_id"]["route"]] = row["_id"]["pool"]
        return routes

    async def set_pool_for_route(
        self, route: str, pool: str, seconds_per_mib: float | None = None
    ) -> int:
        rules.check_route_pool(pool, seconds_per_mib)
        moving = {"status": JobStatus.PENDING.value, "route": route, "pool": {"$ne": pool}}
        changed = 0
        for collection in _LIVE:
            jobs = self._jobs[collection]
            if seconds_per_mib is None:
                result = await jobs.update_many(
                    moving,
                    {"$set": {"pool": pool, "updated_at": _now()}, "$inc": {"version": 1}},
                )
                changed += result.modified_count
                continue
            # Each job's delay follows its own size; a job claimed meanwhile is left alone.
            async for doc in jobs.find(moving, {"file_size": 1, "created_at": 1}):
                delay = claim_delay_for_size(doc["file_size"], seconds_per_mib)
                update = {
                    "pool": pool,
                    "claim_delay_ms": delay,
                    "claim_at": doc["created_at"] + timedelta(milliseconds=delay),
                    "updated_at": _now(),
                }
                result = await jobs.update_one(
                    {**moving, "_id": doc["_id"]}, {"$set": update, "$inc": {"version": 1}}
                )
                changed += result.modified_count
        if changed:
            self._wake()
        return changed

    async def existing_job_ids(self, media_processing_ids: Collection[str]) -> set[str]:
        wanted = list(dict.fromkeys(media_processing_ids))
        found: set[str] = set()
        for start in range(0, len(wanted), 1000):
            chunk = wanted[start : start + 1000]
            for collection in JobCollection:
                cursor = self._jobs[collection].find({"_id": {"$in": chunk}}, {"_id": 1})
                found.update([doc["_id"] async for doc in cursor])
        return found
