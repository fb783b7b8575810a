"""How the MongoDB adapter finds and moves a job that lives in one of three collections:
in a multi-document transaction on a replica set, copy-then-compare-and-delete on a
standalone server (see mongo.py), re-reading until two reads agree. Creating a job and
finding one are built on the same steps."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta

from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.errors import DuplicateKeyError

from services.common.errors import UnavailableError
from services.common.store._mongo_base import (
    _LIVE,
    _MAX_MOVE_RETRIES,
    _T,
    Doc,
    MongoBase,
    Session,
    _job,
    _matches,
    _now,
)
from services.common.store._types import (
    NEW_JOB_FIELDS,
    JobCollection,
    JobStatus,
    MediaJob,
    NewMediaJob,
    truncate_to_millis,
)


class MongoJobMoves(MongoBase):
    """The multi-collection steps the job operations are built from."""

    async def create_job(self, job: NewMediaJob) -> bool:
        now = _now()
        doc: Doc = {name: getattr(job, name) for name in NEW_JOB_FIELDS}
        doc.update(
            _id=job.media_processing_id,
            originating_time=truncate_to_millis(job.originating_time),
            status=JobStatus.PENDING.value,
            attempts=0,
            fence=0,
            claimed_by=None,
            lease_expires_at=None,
            available_at=now,
            result=None,
            media_result=None,
            error=None,
            created_at=now,
            created_ns=time.time_ns(),  # tie-break within one millisecond
            updated_at=now,
            failed_at=None,
            claim_at=now + timedelta(milliseconds=job.claim_delay_ms),
            version=0,
        )
        job_id = job.media_processing_id
        active = self._jobs[JobCollection.ACTIVE]
        if self._transactions:

            async def create(session: AsyncClientSession) -> bool:
                for collection in (JobCollection.HOLDING, JobCollection.FAILED):
                    if await self._jobs[collection].find_one({"_id": job_id}, session=session):
                        return False
                await self._step("create")
                # A move that took the job out of active after this snapshot conflicts
                # with this insert, and the transaction runs again.
                await active.insert_one(doc, session=session)
                return True

            try:
                created = await self._in_transaction(create)
            except DuplicateKeyError:
                return False
        else:
            # Insert first, then look elsewhere: a job that is in active (or moved into
            # it) at any point makes the insert fail; one in holding or failed after the
            # insert is found by the check, which withdraws the insert; one moved into
            # active over the insert replaced it (a copy never loses to an older
            # version). `created_ns` tells this insert from the job that existed.
            ours = doc["created_ns"]
            try:
                await active.insert_one(doc)
            except DuplicateKeyError:
                return False
            await self._step("create")
            created = True
            for collection in (JobCollection.HOLDING, JobCollection.FAILED):
                other = await self._jobs[collection].find_one({"_id": job_id}, {"created_ns": 1})
                if other is not None and other.get("created_ns") != ours:
                    # Withdraw only the untouched insert. If a worker claimed it in this
                    # window it stays, a duplicate that the next move settles.
                    await active.delete_one({"_id": job_id, "version": 0, "created_ns": ours})
                    created = False
                    break
            if created:
                now_there = await active.find_one({"_id": job_id}, {"created_ns": 1})
                created = now_there is None or now_there.get("created_ns") == ours
        if created:
            self._wake()
        return created

    async def get_job(self, media_processing_id: str) -> tuple[JobCollection, MediaJob] | None:
        # The common case, one read: a job found in active is there at that moment.
        doc = await self._jobs[JobCollection.ACTIVE].find_one({"_id": media_processing_id})
        if doc is not None:
            return JobCollection.ACTIVE, _job(doc)
        if self._transactions:
            # One snapshot of the three collections: a move is either before or after it.
            found = await self._in_transaction(
                lambda session: self._find_everywhere(media_processing_id, session)
            )
        else:
            found = await self._consistently(
                media_processing_id,
                lambda: self._find_everywhere(media_processing_id, None),
                bool,
            )
        if not found:
            return None
        # Mid-move on a standalone server the job can be in two places: the copy has the
        # higher version.
        collection = max(found, key=lambda c: found[c].get("version", 0))
        return collection, _job(found[collection])

    async def _find_everywhere(self, job_id: str, session: Session) -> dict[JobCollection, Doc]:
        found: dict[JobCollection, Doc] = {}
        for n, collection in enumerate(JobCollection):
            if n:
                await self._step("get_job")
            doc = await self._jobs[collection].find_one({"_id": job_id}, session=session)
            if doc is not None:
                found[collection] = doc
        return found

    async def _versions(self, job_id: str) -> tuple[int | None, ...]:
        versions: list[int | None] = []
        for collection in JobCollection:
            doc = await self._jobs[collection].find_one({"_id": job_id}, {"version": 1})
            versions.append(None if doc is None else int(doc.get("version", 0)))
        return tuple(versions)

    async def _consistently(
        self,
        job_id: str,
        attempt: Callable[[], Awaitable[_T]],
        succeeded: Callable[[_T], bool],
    ) -> _T:
        """Without transactions: `attempt` (which looks in several collections in turn)
        until it succeeds, or until it fails while no copy of the job changed.

        Every move writes a copy with a higher `version` before it deletes the source, and
        every update bumps `version`, so equal versions in all three collections before
        and after a failed attempt mean no move ran in between: the failure is real.
        """
        outcome = await attempt()
        for _ in range(_MAX_MOVE_RETRIES):
            if succeeded(outcome):
                return outcome
            before = await self._versions(job_id)
            outcome = await attempt()
            if succeeded(outcome) or await self._versions(job_id) == before:
                return outcome
        raise UnavailableError(f"job {job_id} kept moving while being looked up; retry")

    async def _update_live(self, query: Doc, update: Doc) -> JobCollection | None:
        """Apply `update` to the job where it lives (ACTIVE, else HOLDING); where it matched."""
        update = {**update, "$inc": {**update.get("$inc", {}), "version": 1}}
        job_id: str = query["_id"]
        # The common case, one atomic update: a job found in active is where it lives
        # (mid-move on a standalone server, the move then carries the update along).
        if (await self._jobs[JobCollection.ACTIVE].update_one(query, update)).matched_count:
            return JobCollection.ACTIVE

        async def apply(session: Session) -> JobCollection | None:
            where: JobCollection | None = None
            for n, collection in enumerate(_LIVE):
                if n:
                    await self._step("update_live")
                result = await self._jobs[collection].update_one(query, update, session=session)
                if result.matched_count and where is None:
                    where = collection
                    if session is not None:
                        break
                # Without transactions a job mid-move has two copies: both get the update,
                # so the copy the move keeps has it.
            return where

        if self._transactions:
            return await self._in_transaction(apply)
        return await self._consistently(job_id, lambda: apply(None), lambda w: w is not None)

    async def _move(
        self,
        source: JobCollection,
        target: JobCollection,
        query: Doc,
        transform: Callable[[Doc], Doc] | None = None,
        session: Session = None,
    ) -> bool:
        """Move the one document matching `query` from source to target; False if none.

        The copy gets `version + 1`. In a transaction (`session`) that is all; the
        transaction makes copy and delete one step. Without one, the copy never replaces
        a newer document in the target, and the source is deleted only if its version is
        unchanged (compare-and-delete): a changed source is copied again, and a target
        already as new as the copy is authoritative, so the source goes. A job thus always
        exists somewhere, whatever runs concurrently.
        """
        src, dst = self._jobs[source], self._jobs[target]
        doc = await src.find_one(query, session=session)
        if doc is None:
            return False
        job_id = doc["_id"]
        for _ in range(_MAX_MOVE_RETRIES):
            copy = dict(doc) if transform is None else transform(dict(doc))
            copy["version"] = doc.get("version", 0) + 1
            if session is not None:
                await dst.replace_one({"_id": job_id}, copy, upsert=True, session=session)
                await self._step("move")
                await src.delete_one({"_id": job_id}, session=session)
                return True
            # A DuplicateKeyError: the target holds this job, as new as the copy or newer,
            # and stays.
            with contextlib.suppress(DuplicateKeyError):
                await dst.replace_one(
                    {"_id": job_id, "version": {"$lt": copy["version"]}}, copy, upsert=True
                )
            await self._step("move")
            deleted = await src.delete_one({"_id": job_id, "version": doc.get("version", 0)})
            if deleted.deleted_count:
                return True
            current = await src.find_one({"_id": job_id})
            if current is None:
                return True  # another move took the source; the job is in the target
            if not _matches(current, query):
                # Changed beyond `query` (a new claim): not ours to move. Withdraw our
                # copy if untouched; the source, newer than it, keeps the job.
                await dst.delete_one({"_id": job_id, "version": copy["version"]})
                return False
            doc = current
        raise UnavailableError(
            f"job {job_id} kept changing while being moved {source} → {target}; retry"
        )

    async def _move_in_transaction(
        self,
        source: JobCollection,
        target: JobCollection,
        query: Doc,
        transform: Callable[[Doc], Doc] | None = None,
    ) -> bool:
        if not self._transactions:
            return await self._move(source, target, query, transform)
        return await self._in_transaction(
            lambda session: self._move(source, target, query, transform, session)
        )
