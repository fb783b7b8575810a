"""The SQLite adapter's media jobs (`MediaJobStore`).

Claims are one `UPDATE … RETURNING` statement under the write lock, so two claimers —
threads or processes — can never take the same job."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any

from services.common.errors import UnavailableError
from services.common.store import _rules as rules
from services.common.store._adapter_base import JobPage, JobPagesBase
from services.common.store._notify import DataVersionWatcher, Notifier
from services.common.store._sqlite_base import (
    _COLLECTION_OF,
    _JOB_SELECT,
    _LIVE,
    ACTIVE,
    FAILED,
    HOLDING,
    WATCH_INTERVAL_SECONDS,
    SqliteBase,
    _claim_sql,
    _copy_sql,
    _first_table,
    _found_among,
    _job,
    _lease_ms,
    _now_ms,
)
from services.common.store._types import (
    NEW_JOB_FIELDS,
    CheckpointOutcome,
    ClaimedJob,
    JobCollection,
    JobStatus,
    MediaJob,
    NewMediaJob,
    PoolDepth,
    claim_delay_for_size,
    from_millis,
    require_json_object,
    to_millis,
)

# Whether the id is held by a job that is not active (a re-created one must not shadow it).
_ELSEWHERE = (
    f"SELECT 1 FROM {HOLDING} WHERE media_processing_id = ?"
    f" UNION ALL SELECT 1 FROM {FAILED} WHERE media_processing_id = ? LIMIT 1"
)


class SqliteJobs(SqliteBase, JobPagesBase):
    """`MediaJobStore` on the SQLite file."""

    # --- media jobs ----------------------------------------------------------------

    async def create_job(self, job: NewMediaJob) -> bool:
        values = {name: getattr(job, name) for name in NEW_JOB_FIELDS}
        values["originating_time"] = to_millis(job.originating_time)
        values["has_staged_file"] = int(job.has_staged_file)
        columns = ", ".join(NEW_JOB_FIELDS)
        marks = ", ".join(f":{name}" for name in NEW_JOB_FIELDS)
        sql = (
            f"INSERT INTO {ACTIVE} ({columns}, status, attempts, fence, available_at,"
            f" created_at, updated_at, claim_at)"
            f" VALUES ({marks}, 'pending', 0, 0, :now, :now, :now, :now + :claim_delay_ms)"
            " ON CONFLICT (media_processing_id) DO NOTHING"
        )

        def create(conn: sqlite3.Connection) -> bool:
            # One statement for both other collections: this runs once per new media job.
            if conn.execute(_ELSEWHERE, (job.media_processing_id,) * 2).fetchone():
                return False
            values["now"] = _now_ms()
            return conn.execute(sql, values).rowcount == 1

        created: bool = await self._write(create)
        if created:
            self._wake()
        return created

    async def get_job(self, media_processing_id: str) -> tuple[JobCollection, MediaJob] | None:
        def read(conn: sqlite3.Connection) -> tuple[JobCollection, MediaJob] | None:
            for table in (ACTIVE, HOLDING, FAILED):
                row = conn.execute(
                    f"SELECT {_JOB_SELECT} FROM {table} WHERE media_processing_id = ?",
                    (media_processing_id,),
                ).fetchone()
                if row is not None:
                    return _COLLECTION_OF[table], _job(row)
            return None

        found: tuple[JobCollection, MediaJob] | None = await self._read(read)
        return found

    async def claim_job(
        self, pools: Sequence[str], worker_id: str, lease_seconds: float
    ) -> ClaimedJob | None:
        unique_pools = rules.claim_pools(pools)
        lease_ms = _lease_ms(lease_seconds, "lease_seconds")
        sql = self._claim_sql.get(len(unique_pools))
        if sql is None:
            sql = self._claim_sql[len(unique_pools)] = _claim_sql(len(unique_pools))
        params: dict[str, Any] = {f"pool{i}": pool for i, pool in enumerate(unique_pools)}
        params["worker"] = worker_id

        def claim(conn: sqlite3.Connection) -> ClaimedJob | None:
            now = _now_ms()
            row = conn.execute(sql, {**params, "now": now, "lease": now + lease_ms}).fetchone()
            if row is None:
                return None
            job = _job(row)
            return ClaimedJob(job=job, token=job.fence)

        claimed: ClaimedJob | None = await self._write(claim)
        return claimed

    async def claim_jobs(
        self, slots: Mapping[str, int], worker_id: str, lease_seconds: float
    ) -> list[ClaimedJob]:
        wanted = rules.claim_slots(slots)
        lease_ms = _lease_ms(lease_seconds, "lease_seconds")

        def claim(conn: sqlite3.Connection) -> list[ClaimedJob]:
            # One claim after another in one transaction: each is the oldest of the pools
            # that still have slots, so the batch keeps the claim order of single claims.
            # A fresh count per attempt: the runner re-runs the batch after a lock wait.
            left = dict(wanted)
            now = _now_ms()
            claimed: list[ClaimedJob] = []
            while left:
                pools = list(left)
                sql = self._claim_sql.get(len(pools))
                if sql is None:
                    sql = self._claim_sql[len(pools)] = _claim_sql(len(pools))
                params: dict[str, Any] = {f"pool{i}": pool for i, pool in enumerate(pools)}
                params.update(worker=worker_id, now=now, lease=now + lease_ms)
                row = conn.execute(sql, params).fetchone()
                if row is None:
                    break
                job = _job(row)
                claimed.append(ClaimedJob(job=job, token=job.fence))
                left[job.pool] -= 1
                if not left[job.pool]:
                    del left[job.pool]
            return claimed

        jobs: list[ClaimedJob] = await self._write(claim)
        return jobs

    async def renew_lease(self, media_processing_id: str, token: int, lease_seconds: float) -> bool:
        lease_ms = _lease_ms(lease_seconds, "lease_seconds")

        def renew(conn: sqlite3.Connection) -> bool:
            now = _now_ms()
            return (
                _first_table(
                    conn,
                    "UPDATE {table} SET lease_expires_at = ?, updated_at = ?"
                    " WHERE media_processing_id = ? AND status = 'processing' AND fence = ?",
                    (now + lease_ms, now, media_processing_id, token),
                )
                is not None
            )

        renewed: bool = await self._write(renew)
        return renewed

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

        def complete(conn: sqlite3.Connection) -> JobCollection | None:
            return _first_table(
                conn,
                "UPDATE {table} SET status = 'completed', result = ?, error = ?,"
                " media_result = ?, updated_at = ?"
                " WHERE media_processing_id = ? AND status = 'processing' AND fence = ?",
                (result, error, media_result, _now_ms(), media_processing_id, token),
            )

        where: JobCollection | None = await self._write(complete)
        return where

    async def release_job(
        self, media_processing_id: str, token: int, error: str, retry_at: datetime
    ) -> bool:
        retry_ms = to_millis(retry_at, "retry_at")

        def release(conn: sqlite3.Connection) -> bool:
            return (
                _first_table(
                    conn,
                    "UPDATE {table} SET status = 'pending', error = ?, available_at = ?,"
                    " claimed_by = NULL, lease_expires_at = NULL, updated_at = ?"
                    " WHERE media_processing_id = ? AND status = 'processing' AND fence = ?",
                    (error, retry_ms, _now_ms(), media_processing_id, token),
                )
                is not None
            )

        released: bool = await self._write(release)
        if released:
            self._wake()
        return released

    async def checkpoint_job(
        self,
        media_processing_id: str,
        token: int,
        checkpoint: str,
        remaining_delay_ms: int | None = None,
    ) -> CheckpointOutcome:
        rules.check_checkpoint(checkpoint, remaining_delay_ms)

        def save(conn: sqlite3.Connection) -> CheckpointOutcome:
            now = _now_ms()
            where = _first_table(
                conn,
                "UPDATE {table} SET checkpoint = ?, updated_at = ?"
                " WHERE media_processing_id = ? AND status = 'processing' AND fence = ?",
                (checkpoint, now, media_processing_id, token),
            )
            if where is None:
                return CheckpointOutcome.LOST
            if remaining_delay_ms is None or where is not JobCollection.ACTIVE:
                # A held job (its bot stopped meanwhile) is claimed by nobody else.
                return CheckpointOutcome.KEPT
            claim_at = now + remaining_delay_ms
            # The claim-order index, scanned up to this job's new place.
            cheaper = conn.execute(
                f"SELECT 1 FROM {ACTIVE} WHERE status = 'pending'"
                f" AND pool = (SELECT pool FROM {ACTIVE} WHERE media_processing_id = ?)"
                " AND claim_at < ? AND available_at <= ? AND claim_delay_ms < ? LIMIT 1",
                (media_processing_id, claim_at, now, remaining_delay_ms),
            ).fetchone()
            if cheaper is None:
                return CheckpointOutcome.KEPT
            conn.execute(
                f"UPDATE {ACTIVE} SET status = 'pending', available_at = ?,"
                " claim_at = ?, claimed_by = NULL, lease_expires_at = NULL,"
                " attempts = MAX(attempts - 1, 0), updated_at = ?"
                " WHERE media_processing_id = ?",
                (now, claim_at, now, media_processing_id),
            )
            return CheckpointOutcome.YIELDED

        outcome: CheckpointOutcome = await self._write(save)
        if outcome is CheckpointOutcome.YIELDED:
            self._wake()
        return outcome

    async def resolve_stale_job(self, media_processing_id: str, result: str, error: str) -> bool:
        def resolve(conn: sqlite3.Connection) -> bool:
            return (
                _first_table(
                    conn,
                    "UPDATE {table} SET status = 'completed', result = ?, error = ?,"
                    " fence = fence + 1, claimed_by = NULL, lease_expires_at = NULL,"
                    " updated_at = ? WHERE media_processing_id = ? AND status != 'completed'",
                    (result, error, _now_ms(), media_processing_id),
                )
                is not None
            )

        resolved: bool = await self._write(resolve)
        return resolved

    async def delete_job(self, media_processing_id: str) -> bool:
        def delete(conn: sqlite3.Connection) -> bool:
            return (
                _first_table(
                    conn,
                    "DELETE FROM {table} WHERE media_processing_id = ?",
                    (media_processing_id,),
                )
                is not None
            )

        deleted: bool = await self._write(delete)
        return deleted

    async def delete_failed_job(self, media_processing_id: str) -> bool:
        def delete(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                f"DELETE FROM {FAILED} WHERE media_processing_id = ?", (media_processing_id,)
            )
            return cursor.rowcount > 0

        deleted: bool = await self._write(delete)
        return deleted

    async def fail_job(
        self, media_processing_id: str, error: str, token: int | None = None
    ) -> bool:
        where = "media_processing_id = :id"
        if token is not None:
            where += " AND status = 'processing' AND fence = :token"

        def fail(conn: sqlite3.Connection) -> bool:
            params = {"id": media_processing_id, "token": token, "error": error, "now": _now_ms()}
            for table in _LIVE:
                sql = _copy_sql(
                    table,
                    FAILED,
                    where,
                    {"error": ":error", "failed_at": ":now", "updated_at": ":now"},
                )
                if conn.execute(sql, params).rowcount:
                    conn.execute(
                        f"DELETE FROM {table} WHERE media_processing_id = ?",
                        (media_processing_id,),
                    )
                    return True
            return False

        failed: bool = await self._write(fail)
        return failed

    async def move_bot_jobs(self, bot_id: str, source: JobCollection, target: JobCollection) -> int:
        rules.check_bot_move(source, target)
        copy = _copy_sql(source.collection_name, target.collection_name, "bot_id = ?", {})

        def move(conn: sqlite3.Connection) -> int:
            # One transaction: a concurrent complete_job lands either before (and is
            # copied) or after (and finds the job in the target).
            conn.execute(copy, (bot_id,))
            return conn.execute(
                f"DELETE FROM {source.collection_name} WHERE bot_id = ?", (bot_id,)
            ).rowcount

        moved: int = await self._write(move)
        if moved and target is JobCollection.ACTIVE:
            self._wake()
        return moved

    async def list_jobs(self, bot_id: str, collection: JobCollection) -> list[MediaJob]:
        sql = (
            f"SELECT {_JOB_SELECT} FROM {collection.collection_name}"
            " WHERE bot_id = ? ORDER BY created_at, seq"
        )
        jobs: list[MediaJob] = await self._read(
            lambda c: [_job(row) for row in c.execute(sql, (bot_id,))]
        )
        return jobs

    async def list_failed_jobs(self, bot_id: str | None = None, limit: int = 100) -> list[MediaJob]:
        rules.check_page(limit)
        if bot_id is None:
            sql = f"SELECT {_JOB_SELECT} FROM {FAILED} ORDER BY failed_at DESC, seq DESC LIMIT ?"
            params: tuple[Any, ...] = (limit,)
        else:
            sql = (
                f"SELECT {_JOB_SELECT} FROM {FAILED} WHERE bot_id = ?"
                " ORDER BY failed_at DESC, seq DESC LIMIT ?"
            )
            params = (bot_id, limit)
        jobs: list[MediaJob] = await self._read(
            lambda c: [_job(row) for row in c.execute(sql, params)]
        )
        return jobs

    async def requeue_failed_job(self, media_processing_id: str, target: JobCollection) -> bool:
        rules.check_requeue_target(target)
        # Every reset field is a bound parameter of the same name.
        copy = _copy_sql(
            FAILED,
            target.collection_name,
            "media_processing_id = :media_processing_id",
            {name: f":{name}" for name in rules.requeue_reset(0)},
        )

        def requeue(conn: sqlite3.Connection) -> bool:
            params = {**rules.requeue_reset(_now_ms()), "media_processing_id": media_processing_id}
            if not conn.execute(copy, params).rowcount:
                return False
            conn.execute(
                f"DELETE FROM {FAILED} WHERE media_processing_id = ?", (media_processing_id,)
            )
            return True

        requeued: bool = await self._write(requeue)
        if requeued and target is JobCollection.ACTIVE:
            self._wake()
        return requeued

    async def pool_depths(self) -> dict[str, PoolDepth]:
        def read(conn: sqlite3.Connection) -> dict[str, PoolDepth]:
            counts: dict[str, list[Any]] = {}
            for pool, status, count, oldest in conn.execute(
                f"SELECT pool, status, COUNT(*), MIN(created_at) FROM {ACTIVE}"
                " WHERE status IN ('pending', 'processing') GROUP BY pool, status"
            ):
                entry = counts.setdefault(pool, [0, 0, None])
                if status == JobStatus.PENDING:
                    entry[0], entry[2] = count, from_millis(oldest)
                else:
                    entry[1] = count
            return {pool: PoolDepth(e[0], e[1], e[2]) for pool, e in counts.items()}

        depths: dict[str, PoolDepth] = await self._read(read)
        return depths

    async def _jobs_page(self, page: JobPage) -> list[MediaJob]:
        column = "updated_at" if page.completed else "created_at"
        status = "status = 'completed' AND " if page.completed else ""
        sql = (
            f"SELECT {_JOB_SELECT} FROM {page.collection.collection_name}"
            f" WHERE {status}{column} < ? ORDER BY {column}, seq LIMIT ? OFFSET ?"
        )
        params = (to_millis(page.before), page.limit, page.offset)
        jobs: list[MediaJob] = await self._read(
            lambda c: [_job(row) for row in c.execute(sql, params)]
        )
        return jobs

    async def pending_routes(self) -> dict[str, str]:
        def read(conn: sqlite3.Connection) -> dict[str, str]:
            rows = conn.execute(
                f"SELECT route, pool FROM {ACTIVE} WHERE status = 'pending'"
                f" UNION SELECT route, pool FROM {HOLDING} WHERE status = 'pending'"
            )
            return dict(rows.fetchall())

        routes: dict[str, str] = await self._read(read)
        return routes

    async def set_pool_for_route(
        self, route: str, pool: str, seconds_per_mib: float | None = None
    ) -> int:
        rules.check_route_pool(pool, seconds_per_mib)

        def update(conn: sqlite3.Connection) -> int:
            now = _now_ms()
            if seconds_per_mib is None:
                return sum(
                    conn.execute(
                        f"UPDATE {table} SET pool = ?, updated_at = ?"
                        " WHERE status = 'pending' AND route = ? AND pool != ?",
                        (pool, now, route, pool),
                    ).rowcount
                    for table in _LIVE
                )
            moved = 0
            for table in _LIVE:
                rows = conn.execute(
                    f"SELECT seq, file_size FROM {table}"
                    " WHERE status = 'pending' AND route = ? AND pool != ?",
                    (route, pool),
                ).fetchall()
                delays = [(claim_delay_for_size(size, seconds_per_mib), seq) for seq, size in rows]
                conn.executemany(
                    f"UPDATE {table} SET pool = ?, claim_delay_ms = ?,"
                    " claim_at = created_at + ?, updated_at = ? WHERE seq = ?",
                    [(pool, delay, delay, now, seq) for delay, seq in delays],
                )
                moved += len(rows)
            return moved

        changed: int = await self._write(update)
        if changed:
            self._wake()
        return changed

    async def existing_job_ids(self, media_processing_ids: Collection[str]) -> set[str]:
        wanted = list(dict.fromkeys(media_processing_ids))

        def read(conn: sqlite3.Connection) -> set[str]:
            found: set[str] = set()
            for table in (ACTIVE, HOLDING, FAILED):
                sql = f"SELECT media_processing_id FROM {table} WHERE media_processing_id IN"
                found |= _found_among(conn, sql + " ({marks})", wanted)
            return found

        found: set[str] = await self._read(read)
        return found

    async def wait_for_jobs(self, timeout: float) -> None:  # noqa: ASYNC109 (agreed name)
        if self._closed:
            raise UnavailableError("the SQLite store is closed")
        if self._notifier is None:
            self._notifier = Notifier()
        if self._watcher is None:
            self._watcher = DataVersionWatcher(
                self._path, asyncio.get_running_loop(), self._notifier, WATCH_INTERVAL_SECONDS
            )
        with self._watcher.watching():
            await self._notifier.wait(timeout)
