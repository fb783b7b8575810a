"""Operator CLI for media_svc (calls its gRPC API).

    python -m services.media_svc.admin pools
    python -m services.media_svc.admin failed [--bot BOT_ID] [--limit N]
    python -m services.media_svc.admin requeue <media_processing_id>

The address comes from --address, else MEDIA_SVC_ADDRESS, else 127.0.0.1:50052.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence

import grpc
from chatbot.common.v1 import message_pb2
from chatbot.media.v1 import media_service_pb2, media_service_pb2_grpc

from services.common.validation import is_uuid4

DEFAULT_ADDRESS = "127.0.0.1:50052"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m services.media_svc.admin")
    parser.add_argument(
        "--address",
        default=os.environ.get("MEDIA_SVC_ADDRESS", DEFAULT_ADDRESS),
        help="media_svc host:port (default: $MEDIA_SVC_ADDRESS or %(default)s)",
    )
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per call")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("pools", help="pool depth, in flight, concurrency, oldest pending age")
    failed = commands.add_parser("failed", help="list dead-lettered jobs, newest first")
    failed.add_argument("--bot", help="only this bot's jobs")
    failed.add_argument("--limit", type=int, default=100)
    requeue = commands.add_parser("requeue", help="process a failed job again")
    requeue.add_argument("media_processing_id", type=_media_id)
    return parser


async def _run(args: argparse.Namespace) -> str:
    async with grpc.aio.insecure_channel(args.address) as channel:
        stub = media_service_pb2_grpc.MediaServiceStub(channel)
        if args.command == "pools":
            stats = await stub.GetPoolStats(
                media_service_pb2.GetPoolStatsRequest(), timeout=args.timeout
            )
            lines = [
                f"{'pool':<14}{'processor':<14}{'pending':>9}{'in_flight':>11}"
                f"{'concurrency':>13}{'oldest_s':>11}"
            ]
            lines += [
                f"{p.pool:<14}{p.processor:<14}{p.pending:>9}{p.in_flight:>11}"
                f"{p.concurrency:>13}{p.oldest_pending_age_seconds:>11.1f}"
                for p in stats.pools
            ]
            return "\n".join(lines)
        if args.command == "failed":
            request = media_service_pb2.ListFailedJobsRequest(limit=max(0, args.limit))
            if args.bot:
                request.bot_id = args.bot
            listed = await stub.ListFailedJobs(request, timeout=args.timeout)
            if not listed.jobs:
                return "no failed jobs"
            return "\n".join(
                f"{j.media_processing_id}  bot={j.bot_id} chat={j.correspondent_id} "
                f"msg={j.message_id} {message_pb2.MediaKind.Name(j.media_kind)} {j.mime_type} "
                f"attempts={j.attempts} failed_at={j.failed_at.ToDatetime().isoformat()} "
                f"error={j.error}"
                for j in listed.jobs
            )
        requeued = await stub.RequeueFailedJob(
            media_service_pb2.RequeueFailedJobRequest(media_processing_id=args.media_processing_id),
            timeout=args.timeout,
        )
        return f"requeued {args.media_processing_id} into {requeued.collection}"


def _media_id(text: str) -> str:
    # Refused here so a typo never reaches the server or looks like "not found".
    if not is_uuid4(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a media_processing_id (a UUID4)")
    return text


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        print(asyncio.run(_run(args)))
    except grpc.aio.AioRpcError as exc:
        hint = {
            grpc.StatusCode.UNAVAILABLE: f" (is media_svc running at {args.address}? "
            "set --address or MEDIA_SVC_ADDRESS)",
            grpc.StatusCode.NOT_FOUND: " (see `failed` for the ids of failed jobs)",
        }.get(exc.code(), "")
        print(f"error: {exc.code().name}: {exc.details()}{hint}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
