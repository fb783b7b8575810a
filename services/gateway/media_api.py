"""The media pools and the dead-lettered media jobs for operators, as JSON routes (the
console's pools and failures pages show the same):

    GET    /media/pools                               depth, in flight (per media_svc
                                                      replica), oldest pending, failures,
                                                      and the processor definitions with
                                                      their validation state
    GET    /media/failed-jobs?bot_id=&limit=          dead-lettered jobs, newest first
    POST   /media/failed-jobs/{media_processing_id}/requeue
    DELETE /media/failed-jobs/{media_processing_id}

A requeue moves the job to `active` (or `holding` for a stopped bot: its next start
activates it) through the one owner of job moves, common/media_jobs.py, as media_svc's
RequeueFailedJob does; works while media_svc is down. A job whose media was staged
cannot be requeued: media_svc deletes a failed job's staged file (and the cleanup any
file no live job references), so there is nothing to process again. A delete removes the
job from `failed` only (its placeholder was resolved with the failure when it failed)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from aiohttp import web

from services.common.errors import InvalidInputError, NotFoundError
from services.common.media_jobs import JobLifecycleStore, MediaJobs
from services.common.routing import ProcessorDefinitions
from services.common.store import DefinitionsStore, MediaJob
from services.common.validation import is_uuid4
from services.gateway import console_models as cm
from services.gateway.media_client import MediaClient
from services.gateway.media_rates import MediaRates
from services.gateway.openapi import Param, Security, endpoint
from services.gateway.overview_api import kind_name, refuse_unknown_query

MAX_FAILED = 1000
MEDIA = ("media jobs",)
MEDIA_ID = Param(
    "media_processing_id",
    "The job's id (a UUID4).",
    {"type": "string", "format": "uuid"},
)
# Failures counted per pool in this window.
FAILURE_WINDOW = timedelta(hours=1)


class MediaApiStore(JobLifecycleStore, DefinitionsStore, Protocol):
    """The jobs, the registry of active bots (a requeue's target) and the definitions."""


def _time(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def shown_failed(job: MediaJob, now: datetime) -> dict[str, Any]:
    failed_at = job.failed_at or job.updated_at
    return {
        "media_processing_id": job.media_processing_id,
        "bot_id": job.bot_id,
        "correspondent_id": job.correspondent_id,
        "kind": kind_name(job.media_kind),
        "mime_type": job.mime_type,
        "pool": job.pool,
        "attempts": job.attempts,
        "reason": job.error or job.condition_detail or "(no reason recorded)",
        "failed_at": _time(failed_at),
        "age_seconds": round(max(0.0, (now - failed_at).total_seconds()), 1),
    }


def _media_id(request: web.Request) -> str:
    media_id = request.match_info["media_processing_id"]
    if not is_uuid4(media_id):
        raise InvalidInputError(f"media_processing_id must be a UUID4, got {media_id[:64]!r}")
    return media_id


class MediaApi:
    def __init__(self, store: MediaApiStore, media: MediaClient, rates: MediaRates) -> None:
        self._store = store
        self._media = media
        self._rates = rates

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/media/pools", self.get_pools)
        app.router.add_get("/media/failed-jobs", self.get_failed_jobs)
        base = "/media/failed-jobs/{media_processing_id}"
        app.router.add_post(base + "/requeue", self.post_requeue)
        app.router.add_delete(base, self.delete_failed)

    async def pools(self) -> dict[str, Any]:
        now = datetime.now(UTC)
        depths = await self._store.pool_depths()
        replica_pools, problems = await self._media.replica_pools()
        pool_rates, rate_problems = await self._rates.read()
        problems += rate_problems
        failed = await self._store.list_failed_jobs(None, MAX_FAILED)
        failed_by_pool = Counter(j.pool for j in failed)
        recent_by_pool = Counter(
            j.pool for j in failed if j.failed_at is not None and now - j.failed_at < FAILURE_WINDOW
        )
        definitions = await self._store.get_processor_definitions()
        parsed: ProcessorDefinitions | None = None
        try:
            if definitions is not None:
                parsed = ProcessorDefinitions.from_document(definitions)
            validation = "valid" if parsed is not None else "missing (the built-in table is used)"
        except InvalidInputError as error:
            parsed, validation = None, f"invalid: {error}"
        names = [p.name for p in parsed.pools] if parsed is not None else []
        names += sorted(({*depths, *(p.pool for p in replica_pools), *failed_by_pool}) - set(names))
        rows = []
        for name in names:
            depth = depths.get(name)
            oldest = depth.oldest_pending_created_at if depth else None
            replicas = [p for p in replica_pools if p.pool == name]
            rows.append(
                {
                    "pool": name,
                    "processor": replicas[0].processor if replicas else None,
                    "pending": depth.pending if depth else 0,
                    "processing": depth.processing if depth else 0,
                    "oldest_pending_age_seconds": (
                        round((now - oldest).total_seconds(), 1) if oldest else 0.0
                    ),
                    "failed": failed_by_pool[name],
                    "failed_last_hour": recent_by_pool[name],
                    "replicas": [
                        {
                            "replica": p.replica,
                            "in_flight": p.in_flight,
                            "concurrency": p.concurrency,
                        }
                        for p in replicas
                    ],
                    "rates": [
                        {
                            "replica": r.replica,
                            "jobs_per_minute": r.jobs_per_minute,
                            "failure_rate": r.failure_rate,
                            "window_seconds": r.window_seconds,
                        }
                        for r in pool_rates
                        if r.pool == name
                    ],
                }
            )
        return {
            "pools": rows,
            "problems": problems,
            "definitions": {"validation": validation, "document": definitions},
        }

    async def failed_jobs(
        self, bot_id: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        now = datetime.now(UTC)
        return [shown_failed(j, now) for j in await self._store.list_failed_jobs(bot_id, limit)]

    async def requeue(self, media_processing_id: str) -> dict[str, Any]:
        collection = await MediaJobs(self._store).requeue(
            media_processing_id, staged_file_exists=_never_staged
        )
        return {"media_processing_id": media_processing_id, "requeued_into": str(collection)}

    async def delete(self, media_processing_id: str) -> dict[str, Any]:
        if not await self._store.delete_failed_job(media_processing_id):
            raise NotFoundError(f"no failed job {media_processing_id}")
        return {"media_processing_id": media_processing_id, "deleted": True}

    @endpoint(
        summary="Media pools: depth, in flight per replica, failures, the definitions",
        tags=MEDIA,
        security=Security.OPERATOR,
        responses={200: cm.Pools},
    )
    async def get_pools(self, request: web.Request) -> web.Response:
        refuse_unknown_query(request, ())
        return web.json_response(await self.pools())

    @endpoint(
        summary="Dead-lettered media jobs, newest first",
        tags=MEDIA,
        security=Security.OPERATOR,
        query=(
            Param("bot_id", "Only this bot's jobs.", {"type": "string"}, required=False),
            Param(
                "limit",
                "At most this many.",
                {"type": "integer", "minimum": 1, "maximum": MAX_FAILED, "default": 100},
                required=False,
            ),
        ),
        responses={200: cm.FailedJobs},
        errors=(400,),
    )
    async def get_failed_jobs(self, request: web.Request) -> web.Response:
        refuse_unknown_query(request, ("bot_id", "limit"))
        bot_id = request.query.get("bot_id") or None
        text = request.query.get("limit", "100")
        if not text.isdigit() or not 1 <= int(text) <= MAX_FAILED:
            raise InvalidInputError(f"limit must be an integer from 1 to {MAX_FAILED}")
        jobs = await self.failed_jobs(bot_id, int(text))
        return web.json_response({"failed_jobs": jobs})

    @endpoint(
        summary="Process a dead-lettered media job again",
        description="Moved to active (or holding while its bot is stopped). A job whose"
        " media was staged is refused (409): its file was deleted when it failed.",
        tags=MEDIA,
        security=Security.OPERATOR,
        path=(MEDIA_ID,),
        responses={200: cm.Requeued},
        errors=(400, 404, 409),
    )
    async def post_requeue(self, request: web.Request) -> web.Response:
        refuse_unknown_query(request, ())
        return web.json_response(await self.requeue(_media_id(request)))

    @endpoint(
        summary="Delete a dead-lettered media job (its placeholder was already resolved)",
        tags=MEDIA,
        security=Security.OPERATOR,
        path=(MEDIA_ID,),
        responses={200: cm.FailedJobDeleted},
        errors=(400, 404),
    )
    async def delete_failed(self, request: web.Request) -> web.Response:
        refuse_unknown_query(request, ())
        return web.json_response(await self.delete(_media_id(request)))


async def _never_staged(media_processing_id: str) -> bool:
    """media_svc deletes a failed job's staged bytes when it fails the job, so the
    console's requeue treats a job that had a file as one that cannot run again."""
    return False
