"""The one owner of the definitions document and of media-job transitions: queue_svc and
media_svc read the same stored table, and the transitions keep their rules."""

from __future__ import annotations

from services.common.job_cost import claim_delay_ms
from services.common.media_jobs import DefinitionsDocument, MediaJobs
from services.common.routing import default_definitions
from services.common.store import JobCollection, Store
from services.common.vocabulary import MediaCondition, RouteKey
from services.media_svc.definitions import DefinitionsManager
from services.media_svc.processors.registry import default_registry
from services.queue_svc.processor_routing import ProcessorRouting
from tests.helpers.store_factories import new_job


async def test_a_missing_document_is_seeded_once_and_read_back_by_everyone(store: Store) -> None:
    assert await store.get_processor_definitions() is None
    first = await DefinitionsDocument(store).read()
    assert first == default_definitions().to_document()
    assert await store.get_processor_definitions() is not None
    # Another reader, later, gets the stored document: seeding again changes nothing.
    assert not await DefinitionsDocument(store).seed()
    assert await DefinitionsDocument(store).read() == first


async def test_queue_svc_and_media_svc_route_by_the_same_stored_table(store: Store) -> None:
    document = default_definitions().to_document()
    for pool in document["pools"]:
        if pool["name"] == "Image":
            pool["routes"][0]["mime_types"] = ["image/png"]  # JPEG now falls back
    await store.put_processor_definitions(document)
    queue_side = await ProcessorRouting(DefinitionsDocument(store)).definitions()
    media_side = DefinitionsManager(store, default_registry())
    await media_side.start()
    for kind, mime in (("MEDIA_KIND_IMAGE", "image/jpeg"), ("MEDIA_KIND_IMAGE", "image/png")):
        queue_pool = queue_side.resolve(MediaCondition.STAGED, kind, mime)
        media_pool = media_side.current.definitions.resolve(MediaCondition.STAGED, kind, mime)
        assert queue_pool == media_pool
    assert queue_side.resolve(MediaCondition.STAGED, "MEDIA_KIND_IMAGE", "image/jpeg") == (
        "Unsupported"
    )


async def test_reroute_sends_an_unreadable_route_to_the_fallback_pool(store: Store) -> None:
    job = new_job(pool="Image", route="from-a-newer-version")
    assert await store.create_job(job)
    moved = await MediaJobs(store).reroute_pending(default_definitions())
    assert moved == 1
    found = await store.get_job(job.media_processing_id)
    assert found is not None and found[1].pool == default_definitions().fallback_pool.name


async def test_reroute_orders_the_moved_jobs_by_their_new_pools_cost(store: Store) -> None:
    definitions = default_definitions()
    key = RouteKey(MediaCondition.STAGED, "MEDIA_KIND_VOICE_NOTE", "audio/ogg")
    target = definitions.route(key)
    job = new_job(pool="Unsupported", route=str(key), file_size=300_000, claim_delay_ms=0)
    assert await store.create_job(job)
    assert await MediaJobs(store).reroute_pending(definitions) == 1
    found = await store.get_job(job.media_processing_id)
    assert found is not None
    assert found[1].pool == target
    assert found[1].claim_delay_ms == claim_delay_ms(definitions.pool(target), 300_000) > 0


async def test_requeue_follows_the_registry_of_active_bots(store: Store) -> None:
    jobs = MediaJobs(store)
    ids = []
    for bot in ("bot-on", "bot-off"):
        job = new_job(bot_id=bot, has_staged_file=False)
        assert await store.create_job(job)
        assert await jobs.dead_letter(job.media_processing_id, "corrupt")
        ids.append(job.media_processing_id)
    assert await store.set_bot_active("bot-on", True)

    async def no_staged_file(_: str) -> bool:
        return False

    assert await jobs.requeue(ids[0], no_staged_file) is JobCollection.ACTIVE
    assert await jobs.requeue(ids[1], no_staged_file) is JobCollection.HOLDING


async def test_a_delivered_success_is_deleted_and_a_failure_kept(store: Store) -> None:
    jobs = MediaJobs(store)
    ok, bad = new_job(), new_job()
    for job in (ok, bad):
        assert await jobs.create(job)
    assert await jobs.end_delivered(ok.media_processing_id, None)
    assert await jobs.end_delivered(bad.media_processing_id, "failed: corrupt")
    assert await store.get_job(ok.media_processing_id) is None
    found = await store.get_job(bad.media_processing_id)
    assert found is not None and found[0] is JobCollection.FAILED
    # Ending twice changes nothing.
    assert not await jobs.end_delivered(ok.media_processing_id, None)
