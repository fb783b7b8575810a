"""How a media job ends once its result is durable in its bot's queue: one rule for
media_svc's worker (after UpdateByMediaId) and queue_svc's StartBot (a result applied
while the bot was stopped).

A success is deleted; a failure (a marker, a stale timeout) moves to `failed`, so
operators still see it in ListFailedJobs and can requeue it."""

from __future__ import annotations

from services.common.store import MediaJobStore


async def end_delivered_job(
    store: MediaJobStore, media_processing_id: str, error: str | None
) -> bool:
    """True when this call ended the job (False: it was gone or moved already)."""
    if not error:
        return await store.delete_job(media_processing_id)
    return await store.fail_job(media_processing_id, error)
