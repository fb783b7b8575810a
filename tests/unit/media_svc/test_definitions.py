"""Definitions: seeded once, reloaded on change, bad documents rejected, jobs re-routed."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from services.common.errors import InvalidInputError
from services.common.routing import default_definitions
from services.common.store import Store
from services.media_svc.definitions import BlockingSpec, DefinitionsManager, build
from services.media_svc.processors.registry import default_registry
from services.media_svc.processors.speech_options import SpeechOptions
from tests.helpers.store_factories import new_job


async def test_seeds_defaults_once(store: Store) -> None:
    first = DefinitionsManager(store, default_registry())
    await first.start()
    assert await store.get_processor_definitions() is not None
    edited = default_definitions().to_document()
    edited["pools"][0]["concurrency"] = 9
    await store.put_processor_definitions(edited)
    # A second replica starting later must not overwrite the operator's edit.
    second = DefinitionsManager(store, default_registry())
    loaded = await second.start()
    image = loaded.pool("Image")
    assert image is not None and image.definition.concurrency == 9


async def test_bad_document_keeps_previous_table(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    manager = DefinitionsManager(store, default_registry())
    await manager.start()
    before = manager.current
    bad: dict[str, Any]
    for bad in (
        {"pools": []},
        {"pools": [{"name": "X", "processor": "nonexistent", "fallback": True}]},
        {"pools": [{"name": "X", "processor": "stub", "options": {"bogus": 1}, "fallback": True}]},
    ):
        await store.put_processor_definitions(bad)
        with caplog.at_level(logging.ERROR):
            assert not await manager.reload()
        assert manager.current is before
        assert "previous table stays in force" in caplog.text
        caplog.clear()


async def test_reload_reroutes_pending_jobs(store: Store) -> None:
    manager = DefinitionsManager(store, default_registry())
    await manager.start()
    job = new_job(pool="Image", route="staged|MEDIA_KIND_IMAGE|image/jpeg")
    assert await store.create_job(job)
    document = default_definitions().to_document()
    # Move image/jpeg out of the Image pool: the fallback (Unsupported) now owns it.
    for pool in document["pools"]:
        if pool["name"] == "Image":
            pool["routes"][0]["mime_types"] = ["image/png"]
    await store.put_processor_definitions(document)
    assert await manager.reload()
    found = await store.get_job(job.media_processing_id)
    assert found is not None and found[1].pool == "Unsupported"
    # Switching a pool's processor is a definition change only.
    for pool in document["pools"]:
        if pool["name"] == "Image":
            pool["processor"] = "unsupported"
            pool["options"] = {}
    await store.put_processor_definitions(document)
    assert await manager.reload()
    image = manager.current.pool("Image")
    assert image is not None and image.definition.processor == "unsupported"


@pytest.mark.parametrize(
    ("pool", "options", "named"),
    [
        ("Audio", {"remote_url": "ftp://stt.example/v1/audio/transcriptions"}, "remote_url"),
        ("Audio", {"detect_languages": ["pt", "klingon"]}, "detect_languages"),
        ("Video", {"model_path": "models/large"}, "model_path"),
        ("Document", {"ocr_pages": -1}, "ocr_pages"),
    ],
)
def test_engine_and_language_options_are_validated_with_the_table(
    pool: str, options: dict[str, Any], named: str
) -> None:
    document = default_definitions().to_document()
    for entry in document["pools"]:
        if entry["name"] == pool:
            entry["options"] = options
    with pytest.raises(InvalidInputError, match=rf"pool {pool!r}: options\.{named}"):
        build(document, default_registry())
    valid = {
        "Audio": {
            "remote_url": "https://stt.example/v1/audio/transcriptions",
            "remote_mode": "primary",
            "detect_languages": ["pt", "es"],
        },
        "Video": {"model_path": "/opt/models/whisper-small"},
        "Document": {"ocr_pages": 2},
    }
    for entry in document["pools"]:
        entry["options"] = valid.get(entry["name"], entry["options"])
    audio = build(document, default_registry()).pool("Audio")
    assert audio is not None and isinstance(audio.spec, BlockingSpec)
    assert isinstance(audio.spec.options, SpeechOptions)
    assert audio.spec.options.remote is not None
    assert (audio.spec.options.remote.mode, audio.spec.options.candidates) == (
        "primary",
        ("pt", "es"),
    )
