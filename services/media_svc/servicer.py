"""MediaService over gRPC: translates requests to MediaOperations; validation, error
mapping and metrics are the gRPC edge's (services.common.grpc_edge)."""

from __future__ import annotations

import grpc
from chatbot.common.v1 import message_pb2
from chatbot.media.v1 import media_service_pb2, media_service_pb2_grpc
from google.protobuf.timestamp_pb2 import Timestamp

from services.common.store import MediaJob
from services.media_svc.operations import MediaOperations


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
        stats = await self._operations.pool_stats()
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
        jobs = await self._operations.failed_jobs(bot_id, request.limit)
        return media_service_pb2.ListFailedJobsResponse(jobs=[_failed_job(j) for j in jobs])

    async def RequeueFailedJob(  # noqa: N802 (gRPC method name)
        self,
        request: media_service_pb2.RequeueFailedJobRequest,
        context: grpc.aio.ServicerContext[object, object],
    ) -> media_service_pb2.RequeueFailedJobResponse:
        target = await self._operations.requeue(request.media_processing_id)
        return media_service_pb2.RequeueFailedJobResponse(collection=target.value)
