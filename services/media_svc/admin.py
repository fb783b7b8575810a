"""Operator CLI: media_svc's jobs (its gRPC API) and webhook dead letters (the
gateway's HTTP API).

    python -m services.media_svc.admin pools
    python -m services.media_svc.admin failed [--bot BOT_ID] [--limit N]
    python -m services.media_svc.admin requeue <media_processing_id>
    python -m services.media_svc.admin webhook-dead-letters <bot_id> [--after SEQ] [--limit N]
    python -m services.media_svc.admin webhook-retry <bot_id> <sequence>
    python -m services.media_svc.admin webhook-skip <bot_id> <sequence>

media_svc's address comes from --address, else MEDIA_SVC_ADDRESS, else 127.0.0.1:50052;
the gateway's from --gateway, else GATEWAY_URL, else http://127.0.0.1:8090, with the
token in GATEWAY_API_TOKEN.
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
from services.gateway.webhook_admin import (
    DEFAULT_GATEWAY_URL,
    AdminRequestError,
    GatewayTarget,
    list_dead_letters,
    retry_dead_letter,
    skip_dead_letter,
)

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
    parser.add_argument(
        "--gateway",
        default=os.environ.get("GATEWAY_URL", DEFAULT_GATEWAY_URL),
        help="the gateway's URL for the webhook commands (default: $GATEWAY_URL or"
        " %(default)s); the token is $GATEWAY_API_TOKEN",
    )
    listed = commands.add_parser(
        "webhook-dead-letters", help="list a bot's webhook dead letters, oldest first"
    )
    listed.add_argument("bot_id")
    listed.add_argument("--after", type=int, default=0, help="only sequences above this")
    listed.add_argument("--limit", type=int, default=100)
    for name, what in (
        ("webhook-retry", "deliver a webhook dead letter now (deleted when delivered)"),
        ("webhook-skip", "delete a webhook dead letter without delivering it"),
    ):
        command = commands.add_parser(name, help=what)
        command.add_argument("bot_id")
        command.add_argument("sequence", type=_sequence)
    return parser


def _sequence(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a delivery sequence (an integer >= 1)")
    return int(text)


async def _webhook_command(args: argparse.Namespace) -> str:
    target = GatewayTarget(args.gateway, os.environ.get("GATEWAY_API_TOKEN", ""), args.timeout)
    if args.command == "webhook-dead-letters":
        return await list_dead_letters(target, args.bot_id, args.after, args.limit)
    if args.command == "webhook-retry":
        return await retry_dead_letter(target, args.bot_id, args.sequence)
    return await skip_dead_letter(target, args.bot_id, args.sequence)


async def _run(args: argparse.Namespace) -> str:
    if args.command.startswith("webhook-"):
        return await _webhook_command(args)
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
    except AdminRequestError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
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
