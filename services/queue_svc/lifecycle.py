"""StartBot and StopBot: a bot's windows, history and media jobs loaded into this
process and parked again, and the shared registry of active bots.

The job moves themselves (holding → active at start, active → holding at stop, the end
of a job whose result is durable) are services.common.media_jobs' transitions."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import Protocol

from services.common.errors import UnavailableError
from services.common.media_jobs import MediaJobs
from services.common.store import (
    BotConfig,
    BotConfigStore,
    IdentityStore,
    JobCollection,
    JobStatus,
    MediaJobStore,
    MessageStore,
)
from services.queue_svc.bot_gate import BotGate, BotState
from services.queue_svc.bot_queues import BotQueues
from services.queue_svc.identities import Identities
from services.queue_svc.ingestion import Ingestion, await_durable
from services.queue_svc.messages import QueueLimits
from services.queue_svc.recovery import restore_history, restore_jobs
from services.queue_svc.service_types import (
    ServiceSettings,
    StartResult,
    StopResult,
    WrongShardError,
    store_call,
)
from services.queue_svc.subscriptions import Subscriptions

log = logging.getLogger("queue_svc.service")


class LifecycleStore(BotConfigStore, MessageStore, MediaJobStore, IdentityStore, Protocol):
    """A bot's configuration and registry entry, its persisted messages, its jobs and
    its identity map."""


class BotLifecycle:
    def __init__(
        self,
        store: LifecycleStore,
        jobs: MediaJobs,
        settings: ServiceSettings,
        gate: BotGate,
        ingestion: Ingestion,
        subscriptions: Subscriptions,
        identities: Identities,
    ) -> None:
        self._store = store
        self._jobs = jobs
        self._settings = settings
        self._gate = gate
        self._ingestion = ingestion
        self._subscriptions = subscriptions
        self._identities = identities

    def check_shard(self, bot_id: str) -> None:
        shard = self._settings.shard
        if not shard.owns(bot_id):
            owner = shard.owner_of(bot_id)
            raise WrongShardError(
                f"bot {bot_id!r} belongs to queue_svc shard {owner} of {shard.count}, not to "
                f"this one ({shard}); call shard {owner}, entry {owner + 1} of "
                "QUEUE_SVC_ADDRESS (services.common.sharding.shard_of)"
            )

    async def start_bot(self, bot_id: str, closed: bool) -> StartResult:
        """Loads the bot's windows, history and jobs, then marks it active; `closed`
        refuses a new start while the service shuts down."""
        self.check_shard(bot_id)
        existing = self._gate.get(bot_id)
        if existing is not None:
            await self._gate.wait_started(bot_id)
            return StartResult(started=False)
        if closed:
            raise UnavailableError("queue_svc is shutting down")
        bot = self._gate.begin(bot_id)
        extra = {"bot_id": bot_id}
        try:
            config = await store_call(self._store.get_bot_config(bot_id), "get_bot_config")
            config = config or BotConfig(bot_id=bot_id)
            queues = BotQueues(
                bot_id,
                config.provider_name,
                QueueLimits(
                    max_messages=config.max_messages,
                    max_characters=config.max_characters,
                    max_age_seconds=config.max_age_seconds,
                    max_message_characters=config.max_message_characters,
                ),
                dedup_capacity=self._settings.dedup_capacity,
            )
            # The identity map first: placeholders and history are placed by it.
            known = await store_call(self._store.identities(bot_id), "identities")
            for identity in known:
                queues.identities.add(identity.pair)
            queues.seed_next_ids(
                await store_call(
                    self._store.max_message_ids(bot_id, config.provider_name), "max_message_ids"
                )
            )
            # Everything this bot has in the store is below the high-water mark before
            # anything of this process is published (replays of resuming subscribers).
            self._subscriptions.seed(
                bot_id, await store_call(self._store.max_sequence(bot_id), "max_sequence")
            )
            # The windows' context for the bot logic (GetWindow): one query for the bot.
            now = datetime.now(UTC)
            history = await store_call(
                self._store.recent_messages(
                    bot_id,
                    config.provider_name,
                    config.max_messages,
                    now - timedelta(seconds=config.max_age_seconds),
                ),
                "recent_messages",
            )
            reactivated = await store_call(self._jobs.reactivate_bot(bot_id), "move_bot_jobs")
            jobs = await store_call(
                self._store.list_jobs(bot_id, JobCollection.ACTIVE), "list_jobs"
            )
            completed_pids = {
                j.provider_message_id
                for j in jobs
                if j.status is JobStatus.COMPLETED and j.provider_message_id
            }
            persisted = (
                await store_call(
                    self._store.persisted_provider_ids(bot_id, completed_pids),
                    "persisted_provider_ids",
                )
                if completed_pids
                else set()
            )
            recovery, already_done = restore_jobs(queues, jobs, persisted)
            for done in already_done:
                await self.finish_job(done.media_processing_id, done.error)
            # After the jobs: history goes ahead of the results applied just now.
            history_restored = restore_history(queues, history, now)
            for key in recovery.applied:
                self._ingestion.track(bot_id, key)
            waits = [self._ingestion.durable(bot_id, k) for k in recovery.applied]
            # Every pair keeps its phone JID under the LID (ids continue above both);
            # a pair left unsettled (learned while stopped, or interrupted) is finished:
            # its merge and, if due and not sent yet, its identity event.
            unsettled = {k.pair.phone_jid for k in known if not k.settled}
            learned = await self._identities.apply(
                queues, [k.pair for k in known], announce=unsettled
            )
            learned.pairs = [p for p in learned.pairs if p.phone_jid in unsettled]
            waits.extend(learned.waits)
            bot.queues = queues
            self._ingestion.notify()
            await await_durable(waits, self._settings.write_timeout_seconds)
            await self._identities.settle(bot_id, learned)
            for media_id in recovery.completed_job_ids:
                await self.finish_job(media_id, recovery.failed_jobs.get(media_id))
            await self._mark_active(bot_id, True)
        except BaseException:
            # Nothing is acknowledged: the bot stays inactive and StartBot can be retried
            # (job moves and re-injection are idempotent).
            self._gate.remove(bot_id)
            bot.started.set()
            raise
        bot.state = BotState.ACTIVE
        bot.started.set()
        log.info(
            "bot started",
            extra={
                **extra,
                "jobs_reactivated": reactivated,
                "placeholders_restored": recovery.placeholders_restored,
                "results_applied": recovery.results_applied,
                "history_restored": history_restored,
            },
        )
        return StartResult(
            True,
            reactivated,
            recovery.placeholders_restored,
            recovery.results_applied,
            history_restored,
        )

    async def finish_job(self, media_processing_id: str, error: str | None) -> None:
        """A completed job whose message is durable: deleted, or failed."""
        await store_call(
            self._jobs.end_delivered(media_processing_id, error), "delete_job or fail_job"
        )

    async def stop_bot(self, bot_id: str) -> StopResult:
        # Refused rather than answered `stopped=false`: the bot may well be running on
        # its own shard.
        self.check_shard(bot_id)
        bot = await self._gate.wait_started(bot_id)
        if bot is None or bot.queues is None:
            return StopResult(stopped=False)
        bot.state = BotState.STOPPING
        try:
            await asyncio.wait_for(bot.idle.wait(), self._settings.write_timeout_seconds)
            persisted = await self._ingestion.drain([bot.queues])
            parked = await store_call(self._jobs.park_bot(bot_id), "move_bot_jobs")
            await self._mark_active(bot_id, False)
        except BaseException:
            bot.state = BotState.ACTIVE
            raise
        self._gate.remove(bot_id)
        log.info(
            "bot stopped",
            extra={"bot_id": bot_id, "messages_persisted": persisted, "jobs_parked": parked},
        )
        return StopResult(True, persisted, parked)

    async def _mark_active(self, bot_id: str, active: bool) -> None:
        # One atomic update per bot in the store: every shard writes this registry.
        await store_call(self._store.set_bot_active(bot_id, active), "set_bot_active")
