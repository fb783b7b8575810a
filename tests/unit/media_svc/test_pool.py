"""The dispatcher: claims for pools with free slots, respects each pool's concurrency."""

from __future__ import annotations

import asyncio

import pytest

from services.common.errors import InvalidInputError
from services.common.store import ClaimedJob, Store
from services.media_svc.config import MediaConfig
from services.media_svc.definitions import DefinitionsManager
from services.media_svc.metrics import MediaMetrics
from services.media_svc.pool import PoolSet
from services.media_svc.processors import default_registry
from services.media_svc.worker import JobWorker
from tests.helpers.definitions import stub_definitions
from tests.helpers.staging import StagingDirectory
from tests.helpers.store_factories import new_job
from tests.helpers.waiting import wait_until
from tests.unit.media_svc.conftest import QueuePeer


async def test_jobs_flow_through_their_pools_within_concurrency(
    store: Store,
    staging: StagingDirectory,
    worker: JobWorker,
    metrics: MediaMetrics,
    queue_peer: QueuePeer,
) -> None:
    document = stub_definitions({"Image": {"delay_seconds": 0.05, "text": "img"}})
    for pool in document["pools"]:
        if pool["name"] == "Image":
            pool["concurrency"] = 3
    await store.put_processor_definitions(document)
    definitions = DefinitionsManager(store, default_registry())
    await definitions.start()
    pools = PoolSet(
        store=store,
        worker=worker,
        metrics=metrics,
        worker_id="w",
        lease_seconds=5,
        poll_fallback_seconds=0.5,
    )
    pools.apply(definitions.current)
    peak = 0

    all_delivered = asyncio.Event()

    async def watch(_: object) -> None:
        nonlocal peak
        peak = max(peak, pools.in_flight("Image"))
        if len(queue_peer.servicer.calls) == len(jobs):
            all_delivered.set()

    queue_peer.servicer.on_update = watch
    runner = asyncio.create_task(pools.run())
    jobs = [new_job(pool="Image", caption="") for _ in range(12)]
    jobs.append(
        new_job(
            pool="Corrupt",
            route="corrupt|MEDIA_KIND_IMAGE|image/jpeg",
            has_staged_file=False,
            caption="",
        )
    )
    for job in jobs:
        assert await store.create_job(job)
        if job.has_staged_file:
            staging.path_for(job.media_processing_id).write_bytes(b"x")
    await asyncio.wait_for(all_delivered.wait(), 10)
    pools.stop_claiming()
    await runner
    await pools.drain(5)
    contents = [c.content for c in queue_peer.servicer.calls]
    assert contents.count("img") == 12
    assert "[Corrupted image: could not be decoded]" in contents
    assert 1 <= peak <= 3
    assert sorted({c.media_processing_id for c in queue_peer.servicer.calls}) == sorted(
        j.media_processing_id for j in jobs
    )
    assert (await store.pool_depths()).get("Image") is None or (
        (await store.pool_depths())["Image"].pending == 0
    )


async def test_a_replica_claims_only_the_pools_it_serves(
    store: Store,
    staging: StagingDirectory,
    worker: JobWorker,
    metrics: MediaMetrics,
    queue_peer: QueuePeer,
) -> None:
    config = MediaConfig.from_env({"MEDIA_POOLS": " document, UNSUPPORTED "})
    assert config.pools == {"document", "unsupported"}
    assert config.serves("Document") and not config.serves("Image")
    document = stub_definitions({"Image": {"text": "Image"}, "Document": {"text": "Document"}})
    await store.put_processor_definitions(document)
    definitions = DefinitionsManager(store, default_registry())
    await definitions.start()
    pools = PoolSet(
        store=store,
        worker=worker,
        metrics=metrics,
        worker_id="w",
        lease_seconds=5,
        poll_fallback_seconds=0.2,
    )
    served = [p for p in definitions.current.pools if config.serves(p.definition.name)]
    pools.apply(definitions.current, served)
    assert sorted(p.name for p in pools.pools) == ["Document", "Unsupported"]
    image = new_job(pool="Image", caption="")
    doc = new_job(pool="Document", caption="", media_kind="MEDIA_KIND_DOCUMENT")
    for job in (image, doc):
        assert await store.create_job(job)
        staging.path_for(job.media_processing_id).write_bytes(b"bytes")
    runner = asyncio.create_task(pools.run())
    try:
        await wait_until(lambda: bool(queue_peer.servicer.calls), within=10)
        # Claims take the oldest claimable job first: a later document claimed while the
        # older image stays pending shows the image's pool was never asked for.
        later = new_job(pool="Document", caption="", media_kind="MEDIA_KIND_DOCUMENT")
        assert await store.create_job(later)
        staging.path_for(later.media_processing_id).write_bytes(b"bytes")
        await wait_until(lambda: len(queue_peer.servicer.calls) == 2, within=10)
    finally:
        pools.stop_claiming()
        await runner
    assert [c.content for c in queue_peer.servicer.calls] == ["Document", "Document"]
    found = await store.get_job(image.media_processing_id)
    assert found is not None and found[1].status.value == "pending"


def test_pool_filter_refuses_empty_names() -> None:
    with pytest.raises(InvalidInputError, match="MEDIA_POOLS"):
        MediaConfig.from_env({"MEDIA_POOLS": "audio,,video"})
    assert MediaConfig.from_env({}).pools == frozenset()
    assert MediaConfig.from_env({}).serves("anything")


async def test_a_slot_busy_delivering_is_counted_in_flight(
    store: Store,
    staging: StagingDirectory,
    worker: JobWorker,
    metrics: MediaMetrics,
    queue_peer: QueuePeer,
) -> None:
    """The slot is in use until its one delivery attempt ends, and the gauge says so."""
    await store.put_processor_definitions(stub_definitions({"Image": {"text": "img"}}))
    definitions = DefinitionsManager(store, default_registry())
    await definitions.start()
    pools = PoolSet(
        store=store,
        worker=worker,
        metrics=metrics,
        worker_id="w",
        lease_seconds=5,
        poll_fallback_seconds=0.2,
    )
    pools.apply(definitions.current)
    delivering, answer = asyncio.Event(), asyncio.Event()

    async def hold(_: object) -> None:
        delivering.set()
        await answer.wait()

    queue_peer.servicer.on_update = hold
    job = new_job(pool="Image", caption="")
    assert await store.create_job(job)
    staging.path_for(job.media_processing_id).write_bytes(b"x")
    gauge = metrics.in_flight.labels("Image")
    runner = asyncio.create_task(pools.run())
    try:
        await asyncio.wait_for(delivering.wait(), 10)
        assert gauge._value.get() == 1 and pools.in_flight("Image") == 1
        answer.set()
        await wait_until(lambda: pools.in_flight("Image") == 0, within=10)
        assert gauge._value.get() == 0
    finally:
        answer.set()
        pools.stop_claiming()
        await runner
        await pools.drain(5)


async def test_a_backlog_is_claimed_in_batches_within_the_free_slots(
    store: Store,
    staging: StagingDirectory,
    worker: JobWorker,
    metrics: MediaMetrics,
    queue_peer: QueuePeer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    document = stub_definitions({"Image": {"delay_seconds": 0.05, "text": "img"}})
    for pool in document["pools"]:
        if pool["name"] == "Image":
            pool["concurrency"] = 5
    await store.put_processor_definitions(document)
    definitions = DefinitionsManager(store, default_registry())
    await definitions.start()
    asked: list[tuple[int, int]] = []
    claim_jobs = store.claim_jobs

    async def recorded(slots: dict[str, int], worker_id: str, lease: float) -> list[ClaimedJob]:
        claimed = await claim_jobs(slots, worker_id, lease)
        asked.append((slots.get("Image", 0), sum(c.job.pool == "Image" for c in claimed)))
        return claimed

    monkeypatch.setattr(store, "claim_jobs", recorded)
    jobs = [new_job(pool="Image", caption="") for _ in range(12)]
    for job in jobs:
        assert await store.create_job(job)
        staging.path_for(job.media_processing_id).write_bytes(b"x")
    pools = PoolSet(
        store=store,
        worker=worker,
        metrics=metrics,
        worker_id="w",
        lease_seconds=5,
        poll_fallback_seconds=0.5,
    )
    pools.apply(definitions.current)
    runner = asyncio.create_task(pools.run())
    try:
        await wait_until(lambda: len(queue_peer.servicer.calls) == len(jobs), within=10)
    finally:
        pools.stop_claiming()
        await runner
        await pools.drain(5)
    # The first claim fills all five slots at once; no claim asks beyond the free slots.
    assert (5, 5) in asked
    assert all(0 <= got <= wanted <= 5 for wanted, got in asked)
    assert sum(got for _, got in asked) == len(jobs)
    assert sorted(c.media_processing_id for c in queue_peer.servicer.calls) == sorted(
        j.media_processing_id for j in jobs
    )
