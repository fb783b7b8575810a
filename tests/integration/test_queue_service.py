"""QueueService with the real SQLite store: durability, dedup, placeholders and jobs,
recovery (StartBot / StopBot / restart), subscribers, drains (review 1 §6.4 (3)-(6))."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from services.common.errors import PreconditionError, UnavailableError
from services.common.store import BotConfig, JobCollection, JobStatus, Store
from services.common.vocabulary import MediaCondition
from services.queue_svc.messages import MediaInfo, NewMessage, QueuedMessage
from services.queue_svc.service import (
    CONDITION_DETAIL_MAX_CHARS,
    AddItem,
    AddStatus,
    PlaceholderRequest,
    QueueService,
    ServiceSettings,
    UpdateResult,
)
from services.queue_svc.subscriptions import Delivery, SubscriberOverflowError, Subscription
from tests.helpers.waiting import wait_until
from tests.unit.queue_svc.helpers import IMAGE, job, media_id, sqlite_store, stored, text

BOT = "bot-1"
SETTINGS = ServiceSettings(write_timeout_seconds=5.0, definitions_refresh_seconds=0.0)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with sqlite_store(tmp_path) as s:
        yield s


@pytest.fixture
async def service(store: Store) -> AsyncIterator[QueueService]:
    svc = QueueService(store, SETTINGS)
    await svc.start()
    await svc.start_bot(BOT)
    yield svc
    await svc.shutdown()


def item(content: str = "hello", pid: str = "", corr: str = "c1", bot: str = BOT) -> AddItem:
    return AddItem(bot, corr, text(content, pid=pid))


def recent(content: str, pid: str, corr: str = "c1", at: datetime | None = None) -> AddItem:
    """A message sent now (or `at`): young enough to be restored into the window."""
    message = NewMessage(
        content=content,
        sender="u@s.whatsapp.net",
        source="user",
        originating_time=at or datetime.now(UTC),
        provider_message_id=pid,
    )
    return AddItem(BOT, corr, message)


def placeholder(
    mid: str, pid: str, corr: str = "c1", condition: MediaCondition = MediaCondition.STAGED
) -> PlaceholderRequest:
    return PlaceholderRequest(BOT, corr, text("caption", pid=pid), IMAGE, mid, condition, 10)


async def received(subscription: Subscription) -> list[Delivery]:
    """Everything buffered for this subscriber so far."""
    out: list[Delivery] = []
    while subscription.buffered:
        delivery = await subscription.next()
        assert delivery is not None
        out.append(delivery)
    return out


def contents(deliveries: list[Delivery]) -> list[str]:
    return [d.message.content for d in deliveries]


# -- AddMessage: durable before the answer, emitted once, dedup ------------------------


async def test_add_message_is_in_the_store_when_it_returns_and_emitted_once(
    service: QueueService, store: Store
) -> None:
    sub = service.subscribe(None)
    result = await service.add_message(item("hello", pid="WA1"))
    assert result.status is AddStatus.ADDED and result.id == 1
    history = await store.message_history(BOT, "whatsapp_baileys", "c1")
    assert [(m.id, m.content, m.provider_message_id) for m in history] == [(1, "hello", "WA1")]
    assert contents(await received(sub)) == ["hello"]


async def test_batch_preserves_order_and_answers_each_item(
    service: QueueService, store: Store
) -> None:
    sub = service.subscribe(BOT)
    results = await service.add_messages(
        [item("a", pid="A"), item("b", pid="B"), item("a again", pid="A"), item("x", bot="off")]
    )
    assert [r.status for r in results] == [
        AddStatus.ADDED,
        AddStatus.ADDED,
        AddStatus.DUPLICATE,
        AddStatus.BOT_NOT_ACTIVE,
    ]
    assert [r.id for r in results] == [1, 2, 0, 0]
    assert contents(await received(sub)) == ["a", "b"]
    history = await store.message_history(BOT, "whatsapp_baileys", "c1")
    assert [m.content for m in history] == ["a", "b"]


async def test_duplicate_provider_id_is_recognised_after_a_restart(store: Store) -> None:
    first = QueueService(store, SETTINGS)
    await first.start()
    await first.start_bot(BOT)
    assert (await first.add_message(item(pid="WA7"))).status is AddStatus.ADDED
    await first.shutdown()
    second = QueueService(store, SETTINGS)
    assert await second.start() == [BOT]  # resumed by itself
    sub = second.subscribe(None)
    assert (await second.add_message(item(pid="WA7"))).status is AddStatus.DUPLICATE
    assert (await second.add_message(item(pid="WA8"))).id == 2
    assert contents(await received(sub)) == ["hello"]
    await second.shutdown()


async def test_add_to_inactive_bot_is_a_precondition_error(service: QueueService) -> None:
    with pytest.raises(PreconditionError, match="not active"):
        await service.add_message(item(bot="nobody"))


async def test_store_failure_is_unavailable_and_nothing_is_acknowledged(
    tmp_path: Path,
) -> None:
    async with sqlite_store(tmp_path) as store:
        svc = QueueService(store, SETTINGS)
        await svc.start()
        await svc.start_bot(BOT)
        sub = svc.subscribe(None)
        await store.close()
        with pytest.raises(UnavailableError):  # the dedup query fails: nothing changed
            await svc.add_message(item(pid="WA1"))
        assert (await svc.window(BOT, "c1")).next_id == 1
        with pytest.raises(UnavailableError, match="nothing acknowledged"):
            await svc.add_message(item("no provider id"))  # the batch write fails
        assert await received(sub) == []
        with pytest.raises(UnavailableError):  # the final drain cannot lose it silently
            await svc.shutdown()


# -- §6.4 (3): the final drain --------------------------------------------------------


async def test_shutdown_final_drain_persists_ready_messages_and_no_placeholder(
    store: Store,
) -> None:
    svc = QueueService(store, SETTINGS)  # ingestion not started: everything waits
    await svc.start_bot(BOT)
    mid = media_id()
    placeholder_id, _ = await svc.inject_placeholder(placeholder(mid, "WA-IMG"))
    writers = [asyncio.create_task(svc.add_message(item(str(i)))) for i in range(3)]
    # All three are queued and wait for persistence (nothing persists them yet).
    await wait_until(lambda: sum(q.backlog_size for _, q in svc.bot_snapshots()) == 3, within=5)
    assert not any(w.done() for w in writers)
    assert await store.message_history(BOT, "whatsapp_baileys", "c1") == []
    assert await svc.shutdown() == 3
    assert [r.id for r in await asyncio.gather(*writers)] == [2, 3, 4]
    history = await store.message_history(BOT, "whatsapp_baileys", "c1")
    assert [m.content for m in history] == ["0", "1", "2"]
    assert placeholder_id not in [m.id for m in history]


async def test_stop_bot_drains_parks_jobs_and_answers_bot_not_active(
    service: QueueService, store: Store
) -> None:
    mid = media_id()
    await service.inject_placeholder(placeholder(mid, "WA-IMG"))
    await service.add_message(recent("text", "WA-T"))
    stopped = await service.stop_bot(BOT)
    assert stopped.stopped and stopped.jobs_parked == 1
    found = await store.get_job(mid)
    assert found is not None and found[0] is JobCollection.HOLDING
    status, _ = await service.update_by_media_id(BOT, "c1", mid, "late")
    assert status is UpdateResult.BOT_NOT_ACTIVE
    assert not (await service.stop_bot(BOT)).stopped
    restarted = await service.start_bot(BOT)
    assert restarted.started and restarted.jobs_reactivated == 1
    assert restarted.placeholders_restored == 1
    assert restarted.history_restored == 1
    window = await service.window(BOT, "c1")
    # The placeholder is recovered and the persisted text is back in the window.
    assert [(m.id, m.is_placeholder) for m in window.messages] == [(1, True), (2, False)]
    assert window.next_id == 3 and window.total_characters == len("text")


async def test_restart_refills_windows_from_queues_within_the_bot_limits(store: Store) -> None:
    await store.put_bot_config(
        BotConfig(BOT, max_messages=3, max_characters=1_000, max_age_seconds=3_600)
    )
    first = QueueService(store, SETTINGS)
    await first.start()
    await first.start_bot(BOT)
    for i in range(1, 6):
        await first.add_message(recent(f"m{i}", f"WA-{i}"))
    stale = datetime.now(UTC) - timedelta(hours=2)
    await first.add_message(recent("old", "WA-OLD", corr="c2", at=stale))
    mid = media_id()
    assert (await first.inject_placeholder(placeholder(mid, "WA-IMG"))) == (6, False)
    await first.shutdown()
    rows = len(await store.message_history(BOT, "whatsapp_baileys", "c1"))

    second = QueueService(store, SETTINGS)
    sub = second.subscribe(None)
    assert await second.start() == [BOT]
    window = await second.window(BOT, "c1")
    assert [(m.id, m.content, m.media_processing_id) for m in window.messages] == [
        (3, "m3", None),
        (4, "m4", None),
        (5, "m5", None),
        (6, "caption", mid),
    ]
    assert window.total_characters == 6 and window.next_id == 7
    # Older than max_age_seconds (from originating_time): not restored; ids still go on.
    old = await second.window(BOT, "c2")
    assert old.messages == [] and old.next_id == 2
    [(_, queues)] = second.bot_snapshots()
    assert queues.backlog_size == 0
    # Restored ones are known; older ones are found in the store, as before.
    again = await second.add_messages([item(pid="WA-5"), item(pid="WA-1")])
    assert [r.status for r in again] == [AddStatus.DUPLICATE, AddStatus.DUPLICATE]
    assert (await second.add_message(recent("m7", "WA-7"))).id == 7
    window = await second.window(BOT, "c1")
    assert [m.id for m in window.messages] == [4, 5, 6, 7]  # the oldest restored goes first
    assert contents(await received(sub)) == ["m7"]  # nothing restored was emitted again
    assert len(await store.message_history(BOT, "whatsapp_baileys", "c1")) == rows + 1
    await second.shutdown()


# -- §6.4 (4)-(6): placeholders, jobs, resolution, end to end ------------------------


async def test_inject_placeholder_records_the_job_first_and_emits_nothing(
    service: QueueService, store: Store
) -> None:
    sub = service.subscribe(None)
    mid = media_id()
    message_id, duplicate = await service.inject_placeholder(placeholder(mid, "WA-IMG"))
    assert (message_id, duplicate) == (1, False)
    found = await store.get_job(mid)
    assert found is not None
    collection, stored_job = found
    assert collection is JobCollection.ACTIVE and stored_job.status is JobStatus.PENDING
    assert (stored_job.message_id, stored_job.pool, stored_job.route) == (
        1,
        "Image",
        "staged|MEDIA_KIND_IMAGE|image/jpeg",
    )
    assert stored_job.has_staged_file and stored_job.caption == "caption"
    assert await store.get_processor_definitions() is not None  # seeded with defaults
    assert await received(sub) == []
    assert await store.message_history(BOT, "whatsapp_baileys", "c1") == []
    window = await service.window(BOT, "c1")
    assert window.messages[0].media_processing_id == mid and window.total_characters == 0


async def test_corrupt_media_routes_to_the_corrupt_pool_without_a_staged_file(
    service: QueueService, store: Store
) -> None:
    mid = media_id()
    request = placeholder(mid, "WA-BAD", condition=MediaCondition.CORRUPT)
    detail = "download failed: HTTP 410 after re-upload"
    await service.inject_placeholder(dataclasses.replace(request, condition_detail=detail))
    found = await store.get_job(mid)
    assert found is not None
    assert found[1].pool == "Corrupt" and not found[1].has_staged_file
    assert found[1].condition_detail == detail


async def test_an_oversized_condition_detail_is_cut_not_refused(
    service: QueueService, store: Store
) -> None:
    mid = media_id()
    request = placeholder(mid, "WA-BIG", condition=MediaCondition.OVER_QUOTA)
    await service.inject_placeholder(dataclasses.replace(request, condition_detail="x" * 5_000))
    found = await store.get_job(mid)
    assert found is not None and found[1].condition_detail is not None
    assert len(found[1].condition_detail) == CONDITION_DETAIL_MAX_CHARS
    assert found[1].condition_detail.startswith("xxx") and found[1].condition_detail[-1] == "…"
    # A staged medium carries no detail.
    staged = media_id()
    await service.inject_placeholder(placeholder(staged, "WA-OK"))
    found = await store.get_job(staged)
    assert found is not None and found[1].condition_detail is None


async def test_repeated_inject_is_a_duplicate_with_the_same_id(
    service: QueueService, store: Store
) -> None:
    mid = media_id()
    first = await service.inject_placeholder(placeholder(mid, "WA-IMG"))
    again = await service.inject_placeholder(placeholder(mid, "WA-IMG"))
    resent = await service.inject_placeholder(placeholder(media_id(), "WA-IMG"))
    assert first == (1, False) and again == (1, True) and resent == (1, True)
    assert len(await store.list_jobs(BOT, JobCollection.ACTIVE)) == 1
    assert (await service.window(BOT, "c1")).next_id == 2


async def test_inject_after_a_crash_between_job_and_answer_restores_the_placeholder(
    service: QueueService, store: Store
) -> None:
    # The job exists (created before a crash) but this process has no placeholder.
    crashed = job(BOT, "c9", 5, pid="WA-CRASH")
    assert await store.create_job(crashed)
    request = PlaceholderRequest(
        BOT,
        "c9",
        text("", pid="WA-OTHER"),
        IMAGE,
        crashed.media_processing_id,
        MediaCondition.STAGED,
    )
    assert await service.inject_placeholder(request) == (5, True)
    window = await service.window(BOT, "c9")
    assert [(m.id, m.media_processing_id) for m in window.messages] == [
        (5, crashed.media_processing_id)
    ]
    assert window.next_id == 6


async def test_end_to_end_worker_result_reaches_subscribers_once(
    service: QueueService, store: Store
) -> None:
    sub = service.subscribe(BOT)
    await service.add_message(item("before"))
    mid = media_id()
    placeholder_id, _ = await service.inject_placeholder(placeholder(mid, "WA-VOICE"))
    await service.add_message(item("after"))  # not blocked by the media
    claimed = await store.claim_job(["Image"], "worker-1", 30)
    assert claimed is not None and claimed.job.media_processing_id == mid
    assert await store.complete_job(mid, claimed.token, "a cat on a sofa") is JobCollection.ACTIVE
    status, message_id = await service.update_by_media_id(BOT, "c1", mid, "a cat on a sofa")
    assert (status, message_id) == (UpdateResult.UPDATED, placeholder_id)
    assert await service.update_by_media_id(BOT, "c1", mid, "a cat on a sofa") == (
        UpdateResult.UPDATED,
        placeholder_id,
    )
    assert await store.delete_job(mid)
    deliveries = await received(sub)
    assert contents(deliveries) == ["before", "after", "a cat on a sofa"]
    resolved = deliveries[-1].message
    assert resolved.id == placeholder_id and resolved.media_processing_id is None
    history = await store.message_history(BOT, "whatsapp_baileys", "c1")
    assert [(m.id, m.content, m.media_kind) for m in history] == [
        (1, "before", None),
        (2, "a cat on a sofa", "MEDIA_KIND_IMAGE"),
        (3, "after", None),
    ]
    assert (await service.window(BOT, "c1")).total_characters == len(
        "before" + "after" + "a cat on a sofa"
    )


async def test_update_unknown_media_id_is_not_found(service: QueueService) -> None:
    assert await service.update_by_media_id(BOT, "c1", media_id(), "x") == (
        UpdateResult.NOT_FOUND,
        0,
    )


# -- StartBot recovery (P7, completed results, crash after persist) -------------------


async def test_start_bot_recovers_placeholders_with_original_ids_and_applies_results(
    store: Store,
) -> None:
    await store.insert_messages([stored(BOT, "c1", 40, pid="WA-40")])
    pending_41 = job(BOT, "c1", 41)
    pending_42 = job(BOT, "c1", 42)
    done = job(BOT, "c2", 7)
    done_and_persisted = job(BOT, "c1", 39, pid="WA-39")
    for j in (done, done_and_persisted):
        assert await store.create_job(j)
    await store.insert_messages([stored(BOT, "c1", 39, pid="WA-39")])
    for _ in range(2):
        claimed = await store.claim_job(["Image"], "w", 30)
        assert claimed is not None
        assert await store.complete_job(claimed.job.media_processing_id, claimed.token, "r")
    for j in (pending_41, pending_42):
        assert await store.create_job(j)
    # The bot is stopped: its jobs wait in holding.
    assert await store.move_bot_jobs(BOT, JobCollection.ACTIVE, JobCollection.HOLDING) == 4

    svc = QueueService(store, SETTINGS)
    await svc.start()
    sub = svc.subscribe(None)
    result = await svc.start_bot(BOT)
    assert result.started and result.jobs_reactivated == 4
    assert result.placeholders_restored == 2 and result.results_applied == 1
    window = await svc.window(BOT, "c1")
    assert [m.id for m in window.messages if m.is_placeholder] == [41, 42]
    assert (await svc.add_message(item("new"))).id == 43  # P7
    assert [d.message.content for d in await received(sub)] == ["r", "new"]
    remaining = {j.media_processing_id for j in await store.list_jobs(BOT, JobCollection.ACTIVE)}
    assert remaining == {pending_41.media_processing_id, pending_42.media_processing_id}
    c2 = await store.message_history(BOT, "whatsapp_baileys", "c2")
    assert [(m.id, m.content) for m in c2] == [(7, "r")]
    assert not (await svc.start_bot(BOT)).started
    await svc.shutdown()


async def test_start_bot_moves_failure_results_to_failed_and_deletes_successes(
    store: Store,
) -> None:
    timed_out = job(BOT, "c1", 1, caption="cv")
    corrupt = job(BOT, "c1", 2)
    success = job(BOT, "c1", 3)
    persisted_failure = job(BOT, "c2", 1, pid="WA-DONE")
    for j in (corrupt, success, persisted_failure, timed_out):
        assert await store.create_job(j)
    for result, error in (("[Corrupted image]", "corrupt"), ("a cat", None), ("[x]", "failed")):
        claimed = await store.claim_job(["Image"], "w", 30)
        assert claimed is not None
        assert await store.complete_job(
            claimed.job.media_processing_id, claimed.token, result, error
        )
    # Crashed after its message was persisted, before the job's final move.
    await store.insert_messages([stored(BOT, "c2", 1, pid="WA-DONE")])
    # media_svc's cleanup timed this one out while the bot was stopped.
    marker, why = "[Image not processed: timed out]\nCaption: cv", "timed_out: not processed"
    assert await store.resolve_stale_job(timed_out.media_processing_id, marker, why)
    assert await store.move_bot_jobs(BOT, JobCollection.ACTIVE, JobCollection.HOLDING) == 4

    svc = QueueService(store, SETTINGS)
    await svc.start()
    sub = svc.subscribe(None)
    started = await svc.start_bot(BOT)
    assert started.results_applied == 3 and started.placeholders_restored == 0
    assert sorted(contents(await received(sub))) == sorted([marker, "[Corrupted image]", "a cat"])
    history = await store.message_history(BOT, "whatsapp_baileys", "c1")
    assert [(m.id, m.content) for m in history] == [
        (1, marker),
        (2, "[Corrupted image]"),
        (3, "a cat"),
    ]
    failed = {j.media_processing_id: j.error for j in await store.list_failed_jobs(BOT)}
    assert failed == {
        timed_out.media_processing_id: why,
        corrupt.media_processing_id: "corrupt",
        persisted_failure.media_processing_id: "failed",
    }
    assert await store.get_job(success.media_processing_id) is None
    assert await store.list_jobs(BOT, JobCollection.ACTIVE) == []
    await svc.shutdown()


async def test_restart_resumes_active_bots_and_explicit_start_is_harmless(store: Store) -> None:
    first = QueueService(store, SETTINGS)
    await first.start()
    await first.start_bot(BOT)
    mid = media_id()
    await first.inject_placeholder(placeholder(mid, "WA-IMG"))
    await first.shutdown()

    second = QueueService(store, SETTINGS)
    assert await second.start() == [BOT]
    assert not (await second.start_bot(BOT)).started
    window = await second.window(BOT, "c1")
    assert [(m.id, m.media_processing_id) for m in window.messages] == [(1, mid)]
    await second.stop_bot(BOT)
    await second.shutdown()
    third = QueueService(store, SETTINGS)
    assert await third.start() == []  # stopped bots stay stopped
    await third.shutdown()


# -- subscribers ----------------------------------------------------------------------


async def test_overflowing_subscriber_is_disconnected_others_and_writers_are_not(
    store: Store,
) -> None:
    svc = QueueService(store, ServiceSettings(subscriber_buffer=3))
    await svc.start()
    await svc.start_bot(BOT)
    slow = svc.subscribe(None)
    fast = svc.subscribe(None)
    other_bot = svc.subscribe("another-bot")
    for i in range(3):
        await svc.add_message(item(str(i)))
        assert (await fast.next()) is not None
    results = await svc.add_messages([item("3"), item("4")])
    assert [r.status for r in results] == [AddStatus.ADDED, AddStatus.ADDED]
    with pytest.raises(SubscriberOverflowError, match="QUEUE_SVC_SUBSCRIBER_BUFFER"):
        await slow.next()
    assert contents(await received(fast)) == ["3", "4"]
    assert other_bot.buffered == 0
    assert svc.subscriber_drops == 1
    await svc.shutdown()


def test_queued_message_type_is_what_subscribers_get() -> None:
    entry = QueuedMessage(1, "x", "s", "user", text().originating_time, "", 1)
    media = MediaInfo("image/png", "MEDIA_KIND_IMAGE")
    assert not entry.is_placeholder and media.original_filename is None
