"""The results of one event-loop turn reach queue_svc as one UpdateByMediaIds call,
each job getting its own item's outcome; a queue_svc without the batched call (it
answers UNIMPLEMENTED) gets the unary calls instead, with the same outcomes."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from services.common.store import MediaJob, Store
from services.media_svc.delivery import DeliveryRejectedError, DeliveryStatus, QueueDelivery
from tests.helpers.store_factories import new_job
from tests.unit.media_svc.conftest import BOT_NOT_ACTIVE, NOT_FOUND, UPDATED, QueuePeer


async def jobs(store: Store, count: int) -> list[MediaJob]:
    found = []
    for _ in range(count):
        job = new_job()
        assert await store.create_job(job)
        stored = await store.get_job(job.media_processing_id)
        assert stored is not None
        found.append(stored[1])
    return found


@pytest.mark.parametrize("batched", [True, False])
async def test_each_job_gets_its_own_outcome(
    store: Store, queue_peer: QueuePeer, delivery: QueueDelivery, batched: bool
) -> None:
    queue_peer.servicer.batched = batched
    queue_peer.servicer.answers = [UPDATED, NOT_FOUND, BOT_NOT_ACTIVE, UPDATED]
    four = await jobs(store, 4)
    outcomes = await asyncio.gather(
        *(delivery.update(job, f"text {i}") for i, job in enumerate(four))
    )
    assert outcomes == [
        DeliveryStatus.UPDATED,
        DeliveryStatus.NOT_FOUND,
        DeliveryStatus.BOT_NOT_ACTIVE,
        DeliveryStatus.UPDATED,
    ]
    # One batch for the turn (refused once when the peer has no batched call).
    assert queue_peer.servicer.batches == [4]
    assert [c.media_processing_id for c in queue_peer.servicer.calls] == [
        j.media_processing_id for j in four
    ]
    assert [c.content for c in queue_peer.servicer.calls] == [f"text {i}" for i in range(4)]


async def test_an_items_failure_is_that_jobs_alone(
    store: Store, queue_peer: QueuePeer, delivery: QueueDelivery
) -> None:
    queue_peer.servicer.answers = [UPDATED, grpc.StatusCode.INVALID_ARGUMENT, None]
    three = await jobs(store, 3)
    outcomes = await asyncio.gather(
        *(delivery.update(job, "text") for job in three), return_exceptions=True
    )
    assert outcomes[0] == DeliveryStatus.UPDATED
    assert isinstance(outcomes[1], DeliveryRejectedError)
    assert "INVALID_ARGUMENT" in str(outcomes[1])
    # An item the shard could not take (UNAVAILABLE) backs the shard off, as a failed
    # unary call does.
    assert outcomes[2] == DeliveryStatus.UNREACHABLE
    assert not delivery.reachable(three[2].bot_id)
    assert queue_peer.servicer.batches == [3]
