"""MediaService over gRPC: translates requests to MediaOperations and errors to codes."""

from __future__ import annotations

import grpc
from chatbot.common.v1 import message_pb2
from chatbot.media.v1 import media_service_pb2, media_service_pb2_grpc
from google.protobuf.timestamp_pb2 import Timestamp

from services.common.errors import (
    ChatbotError,
    InvalidInputError,
    NotFoundError,
    PreconditionError,
    UnavailableError,
)
from services.common.store import MediaJob
from services.common.validation import validate_message
from services.media_svc.operations import MediaOperations

_CODES: tuple[tuple[type[ChatbotError], grpc.StatusCode], ...] = (
    (InvalidInputError, grpc.StatusCode.INVALID_ARGUMENT),
    (NotFoundError, grpc.StatusCode.NOT_FOUND),
    (PreconditionError, grpc.StatusCode.FAILED_PRECONDITION),
    (UnavailableError, grpc.StatusCode.UNAVAILABLE),
)


async def _abort(context: grpc.aio.ServicerContext[object, object], exc: ChatbotError) -> None:
    code = next((c for kind, c in _CODES if isinstance(exc, kind)), grpc.StatusCode.INTERNAL)
    await context.abort(code, str(exc))


def _failed_job(job: MediaJob) -> media_service_pb2.FailedJob:
    created = Timestamp()
    created.FromDatetime(job.created_at)
    failed = Timestamp()
    if job.failed_at is not None:
        failed.FromDatetime(job.failed_at)
    kind = message_pb2.MediaKind.DESCRIPTOR.values_by_name.get(job.media_kind)
    return media_service_pb2.FailedJob(
        media_processing_id=job.media_processing_id,
        bot_id=job.bot_id,
        correspondent_id=job.correspondent_id,
        message_id=job.message_id,
        media_kind=kind.number if kind is not None else 0,  # type: ignore[arg-type]
        mime_type=job.mime_type,
        error=job.error or "",
        attempts=job.attempts,
        created_at=created,
        failed_at=failed if job.failed_at is not None else None,
    )


class MediaServicer(media_service_pb2_grpc.MediaServiceServicer):
    def __init__(self, operations: MediaOperations) -> None:
        self._operations = operations

    async def GetPoolStats(  # noqa: N802 (gRPC method name)
        self,
        request: media_service_pb2.GetPoolStatsRequest,
        context: grpc.aio.ServicerContext[object, object],
    ) -> media_service_pb2.GetPoolStatsResponse:
        try:
            stats = await self._operations.pool_stats()
        except ChatbotError as exc:
            await _abort(context, exc)
            raise
        return media_service_pb2.GetPoolStatsResponse(
            pools=[
                media_service_pb2.PoolStats(
                    pool=s.pool,
                    pending=s.pending,
                    in_flight=s.in_flight,
                    concurrency=s.concurrency,
                    oldest_pending_age_seconds=s.oldest_pending_age_seconds,
                    processor=s.processor,
                )
                for s in stats
            ]
        )

    async def ListFailedJobs(  # noqa: N802 (gRPC method name)
        self,
        request: media_service_pb2.ListFailedJobsRequest,
        context: grpc.aio.ServicerContext[object, object],
    ) -> media_service_pb2.ListFailedJobsResponse:
        bot_id = request.bot_id if request.HasField("bot_id") else None
        try:
            jobs = await self._operations.failed_jobs(bot_id, request.limit)
        except ChatbotError as exc:
            await _abort(context, exc)
            raise
        return media_service_pb2.ListFailedJobsResponse(jobs=[_failed_job(j) for j in jobs])

    async def RequeueFailedJob(  # noqa: N802 (gRPC method name)
        self,
        request: media_service_pb2.RequeueFailedJobRequest,
        context: grpc.aio.ServicerContext[object, object],
    ) -> media_service_pb2.RequeueFailedJobResponse:
        try:
            problems = validate_message(request)
            if problems:
                raise InvalidInputError("; ".join(problems))
            target = await self._operations.requeue(request.media_processing_id)
        except ChatbotError as exc:
            await _abort(context, exc)
            raise
        return media_service_pb2.RequeueFailedJobResponse(collection=target.value)
