"""Rebuilding a bot's queues at StartBot: placeholders from media jobs (also for a
retried InjectPlaceholder), and each window's recent history from `queues`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from services.common.store import JobStatus, MediaJob, StoredMessage, message_fields
from services.queue_svc.bot_queues import BotQueues, MessageKey
from services.queue_svc.identity import identity_in, readdress
from services.queue_svc.messages import MediaInfo, NewMessage, QueuedMessage

# What the bot sees for a job that completed without any result text.
EMPTY_RESULT_MARKER = "[Media could not be processed]"


@dataclass(slots=True)
class RecoveryResult:
    placeholders_restored: int = 0
    results_applied: int = 0
    # Ready messages produced by applying completed results: wait until durable, then
    # delete their jobs (`completed_job_ids`).
    applied: list[MessageKey] = field(default_factory=list)
    completed_job_ids: list[str] = field(default_factory=list)
    # Of those, the ones that carry an error (a failure marker, a stale timeout): they
    # go to the failed collection with it instead of being deleted.
    failed_jobs: dict[str, str] = field(default_factory=dict)


def job_message(job: MediaJob) -> tuple[NewMessage, MediaInfo]:
    message = NewMessage(
        content=job.caption,
        sender=job.sender,
        source=job.source,
        originating_time=job.originating_time,
        provider_message_id=job.provider_message_id,
        group_id=job.group_id,
        group_name=job.group_name,
        details=job.details,
        identity=identity_in(job.details),
    )
    return message, MediaInfo(job.mime_type, job.media_kind, job.original_filename)


def restore_job(bot: BotQueues, job: MediaJob, result: RecoveryResult) -> None:
    """Re-injects the job's placeholder under its original id; applies a completed result.

    A job recorded under a phone JID that is now kept under its LID goes to the LID's
    queue, re-addressed, under a new id there (its old id belongs to the phone JID's
    numbering; a placeholder's id is never seen before it resolves).
    Idempotent: a placeholder already present is left alone (and not counted again).
    """
    message, media = job_message(job)
    correspondent_id, message = readdress(bot.identities, job.correspondent_id, message)
    original_id = job.message_id if correspondent_id == job.correspondent_id else None
    _entry, created = bot.inject_placeholder(
        correspondent_id, message, media, job.media_processing_id, original_id
    )
    if job.status is JobStatus.COMPLETED:
        outcome = bot.resolve(
            correspondent_id,
            job.media_processing_id,
            job.result or EMPTY_RESULT_MARKER,
            job.media_result,
        )
        if outcome.entry is not None:
            result.results_applied += 1
            result.applied.append(MessageKey(correspondent_id, outcome.entry.id))
        result.completed_job_ids.append(job.media_processing_id)
        if job.error:
            result.failed_jobs[job.media_processing_id] = job.error
    elif created:
        result.placeholders_restored += 1


def restore_jobs(
    bot: BotQueues, jobs: list[MediaJob], persisted_provider_ids: set[str]
) -> tuple[RecoveryResult, list[MediaJob]]:
    """StartBot's recovery over the bot's ACTIVE jobs, in message id order.

    Returns the result and the completed jobs whose message is already in `queues` (a
    crash after persisting, before the job's final move): they only need that move.
    """
    result = RecoveryResult()
    already_done: list[MediaJob] = []

    # Jobs keeping their original ids first: a re-addressed job takes a new id, which
    # must not be one that an original id still to come claims.
    def order(job: MediaJob) -> tuple[bool, str, int]:
        moved = bot.identities.is_alias(job.correspondent_id)
        return moved, job.correspondent_id, job.message_id

    for job in sorted(jobs, key=order):
        if (
            job.status is JobStatus.COMPLETED
            and job.provider_message_id
            and job.provider_message_id in persisted_provider_ids
        ):
            already_done.append(job)
            continue
        restore_job(bot, job, result)
    return result, already_done


def queued_message(message: StoredMessage) -> QueuedMessage:
    return QueuedMessage(*message_fields(message))


def restore_history(
    bot: BotQueues, history: Mapping[str, Sequence[StoredMessage]], now: datetime
) -> int:
    """Refills each window from its persisted messages (`recent_messages`); their age is
    measured from originating_time at `now`. Returns how many the limits kept."""
    restored = 0
    for correspondent_id, messages in history.items():
        entries = [
            (queued_message(m), (now - m.originating_time).total_seconds()) for m in messages
        ]
        if bot.identities.is_alias(correspondent_id):
            # Persisted under a phone JID now kept under its LID: they stay in `queues`
            # under the old id (their ids are the phone JID's numbering), out of the
            # LID's window; their provider ids still count as seen.
            bot.remember_persisted(m.provider_message_id for m in messages)
            continue
        restored += bot.restore_history(correspondent_id, entries)
    return restored
