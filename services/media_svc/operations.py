"""The operator surface as plain Python (the servicer translates it to gRPC)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from services.common.errors import InvalidInputError
from services.common.media_jobs import JobLifecycleStore, MediaJobs
from services.common.store import JobCollection, MediaJob, PoolDepth
from services.media_svc.definitions import DefinitionsManager
from services.media_svc.pool import PoolSet
from services.media_svc.staging import MediaStaging
from services.media_svc.worker import Clock, utc_now

MAX_FAILED_LIMIT = 1000


@dataclass(frozen=True, slots=True)
class PoolStatistics:
    pool: str
    processor: str
    pending: int
    in_flight: int
    concurrency: int
    oldest_pending_age_seconds: float


class MediaOperations:
    def __init__(
        self,
        *,
        store: JobLifecycleStore,
        definitions: DefinitionsManager,
        pools: PoolSet,
        staging: MediaStaging,
        clock: Clock = utc_now,
    ) -> None:
        self._store = store
        self._jobs = MediaJobs(store)
        self._definitions = definitions
        self._pools = pools
        self._staging = staging
        self._clock = clock

    async def pool_stats(self) -> list[PoolStatistics]:
        depths = await self._store.pool_depths()
        now = self._clock()
        stats = []
        for active in self._definitions.current.pools:
            name = active.definition.name
            depth = depths.get(name, PoolDepth(0, 0, None))
            stats.append(
                PoolStatistics(
                    pool=name,
                    processor=active.definition.processor,
                    pending=depth.pending,
                    in_flight=self._pools.in_flight(name),
                    concurrency=active.definition.concurrency,
                    oldest_pending_age_seconds=_age(now, depth.oldest_pending_created_at),
                )
            )
        return stats

    async def failed_jobs(self, bot_id: str | None, limit: int) -> list[MediaJob]:
        if bot_id is not None and not bot_id:
            raise InvalidInputError("bot_id: must not be empty when given")
        if limit < 0:
            raise InvalidInputError("limit: must be >= 0")
        limit = min(limit or 100, MAX_FAILED_LIMIT)
        return await self._store.list_failed_jobs(bot_id, limit)

    async def requeue(self, media_processing_id: str) -> JobCollection:
        """FAILED → ACTIVE when the bot is active, else HOLDING (applied on its start)."""
        return await self._jobs.requeue(media_processing_id, self._staging.exists)


def _age(now: datetime, since: datetime | None) -> float:
    return max(0.0, (now - since).total_seconds()) if since is not None else 0.0
