"""A short voice note is not stuck behind a long one already running (issue 26): the
real Audio pool (one slot, Whisper base in its worker process) transcribes the long note
chunk by chunk; a short note that arrives meanwhile takes the slot at the next chunk
boundary, and the long note resumes from its checkpoint and still finishes whole."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from services.common.job_cost import claim_delay_ms
from services.common.routing import PoolDefinition
from services.common.store import JobStatus, NewMediaJob, Store
from services.media_svc.definitions import DefinitionsManager
from services.media_svc.metrics import MediaMetrics
from services.media_svc.models import assemble_whisper_base, models_dir
from services.media_svc.pool import PoolSet
from services.media_svc.processors import default_registry
from services.media_svc.worker import JobWorker
from tests.helpers import media_samples
from tests.helpers.definitions import stub_definitions
from tests.helpers.staging import StagingDirectory
from tests.helpers.store_factories import new_job
from tests.helpers.waiting import eventually
from tests.unit.media_svc.conftest import QueuePeer

LONG_WORDS = ("bicycle", "umbrella", "lantern", "elephant", "mountain", "goodbye")
LONG_SENTENCES = (
    "The first topic is the red bicycle in the garden.",
    "Next we talk about the blue umbrella near the station.",
    "Then there is the green lantern on the old bridge.",
    "After that comes the grey elephant at the city zoo.",
    "Finally we mention the purple mountain far away.",
    "Thank you for listening and goodbye.",
)


def _long_note(directory: Path) -> Path:
    gap = media_samples.silence(1.5)
    parts = []
    for n, sentence in enumerate(LONG_SENTENCES):
        wav = media_samples.speak(sentence, "en", directory / f"s{n}.wav")
        parts += [media_samples.read_mono(wav), gap]
    return media_samples.write_voice_note(np.concatenate(parts), directory / "long.ogg")


def _staged_voice_job(staging: StagingDirectory, note: Path, audio: PoolDefinition) -> NewMediaJob:
    """The job queue_svc makes for a staged voice note, with its claim order cost."""
    data = note.read_bytes()
    job = new_job(
        pool="Audio",
        route="MEDIA_KIND_VOICE_NOTE|audio/ogg",
        media_kind="MEDIA_KIND_VOICE_NOTE",
        mime_type="audio/ogg",
        caption="",
        file_size=len(data),
        claim_delay_ms=claim_delay_ms(audio, len(data)),
    )
    staging.path_for(job.media_processing_id).write_bytes(data)
    return job


@pytest.mark.timeout(180)
async def test_a_short_note_arriving_during_a_long_one_finishes_first(
    store: Store,
    staging: StagingDirectory,
    worker: JobWorker,
    metrics: MediaMetrics,
    queue_peer: QueuePeer,
    tmp_path: Path,
) -> None:
    assemble_whisper_base(models_dir())
    document = stub_definitions(pools=("Image", "Sticker", "Video", "Document"))
    for pool in document["pools"]:
        if pool["name"] == "Audio":
            assert pool["processor"] == "audio" and pool["concurrency"] == 1
            pool["options"] = {**pool.get("options", {}), "chunk_seconds": 10}
    await store.put_processor_definitions(document)
    definitions = DefinitionsManager(store, default_registry())
    await definitions.start()
    audio = next(p.definition for p in definitions.current.pools if p.definition.name == "Audio")
    long_note = _long_note(tmp_path)
    short_note = media_samples.voice_note("See you tomorrow.", "en", tmp_path / "short.ogg")

    pools = PoolSet(
        store=store,
        worker=worker,
        metrics=metrics,
        worker_id="w",
        lease_seconds=30,
        poll_fallback_seconds=0.5,
    )
    pools.apply(definitions.current)
    runner = asyncio.create_task(pools.run())
    try:
        long_job = _staged_voice_job(staging, long_note, audio)
        assert await store.create_job(long_job)
        long_id = long_job.media_processing_id

        async def long_running() -> bool:
            found = await store.get_job(long_id)
            return found is not None and found[1].status is JobStatus.PROCESSING

        await eventually(long_running, within=30, every=0.01)
        short_job = _staged_voice_job(staging, short_note, audio)
        assert await store.create_job(short_job)
        short_id = short_job.media_processing_id

        async def both_delivered() -> bool:
            ids = {call.media_processing_id for call in queue_peer.servicer.calls}
            return {long_id, short_id} <= ids

        await eventually(both_delivered, within=150)
    finally:
        pools.stop_claiming()
        await runner
        await pools.drain(5)

    order = [call.media_processing_id for call in queue_peer.servicer.calls]
    assert order == [short_id, long_id], "the short note waited for the whole long one"
    contents = {call.media_processing_id: call.content for call in queue_peer.servicer.calls}
    assert "tomorrow" in contents[short_id].lower(), contents[short_id]
    long_text = contents[long_id].lower()
    assert long_text.startswith("[voice note, 0:"), long_text
    positions = [long_text.index(word) for word in LONG_WORDS]
    assert positions == sorted(positions), long_text
    assert all(long_text.count(word) == 1 for word in LONG_WORDS), long_text
    assert await store.existing_job_ids([long_id, short_id]) == set()
