"""media_svc's staging: a job's object is copied into this replica's own scratch
directory for the processor, and deleting it releases the bot's bytes exactly once."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.common.errors import InvalidInputError
from services.common.media_store import MediaMissingError, MediaTooLargeError
from services.common.store import Store
from tests.helpers.staging import StagingDirectory


async def test_a_local_copy_is_whole_private_to_the_replica_and_released(
    tmp_path: Path, store: Store
) -> None:
    staging = StagingDirectory(tmp_path / "staging", store)
    media_id = str(uuid.uuid4())
    staging.path_for(media_id).write_bytes(b"x" * 300_000)
    copy = await staging.local_copy(media_id, 1_000_000)
    assert copy.path.parent == staging.scratch_dir and copy.size == 300_000
    assert copy.path.read_bytes() == b"x" * 300_000
    assert staging.scratch_dir.stat().st_mode & 0o777 == 0o700
    await staging.release_copy(copy)
    assert list(staging.scratch_dir.iterdir()) == []
    assert await staging.exists(media_id)  # the object stays until delivery


async def test_a_refused_copy_leaves_nothing_in_scratch(tmp_path: Path, store: Store) -> None:
    staging = StagingDirectory(tmp_path / "staging", store)
    media_id = str(uuid.uuid4())
    staging.path_for(media_id).write_bytes(b"x" * 100)
    with pytest.raises(MediaTooLargeError):
        await staging.local_copy(media_id, 99)
    with pytest.raises(MediaMissingError):
        await staging.local_copy(str(uuid.uuid4()), 99)
    with pytest.raises(InvalidInputError):
        await staging.local_copy("../etc/passwd", 99)
    assert list(staging.scratch_dir.iterdir()) == []


async def test_deleting_releases_the_bots_bytes_once(tmp_path: Path, store: Store) -> None:
    staging = StagingDirectory(tmp_path / "staging", store)
    media_id = str(uuid.uuid4())

    async def body() -> AsyncIterator[bytes]:
        yield b"y" * 700

    await staging.media.put(media_id, body(), 1000, bot_id="bot-1")
    await store.add_media_usage("bot-1", 700 + 50)  # the upload's bytes and another's
    assert await staging.delete_of("bot-1", media_id)
    assert not await staging.delete_of("bot-1", media_id)
    assert await store.media_usage("bot-1") == 50


async def test_a_restart_clears_the_replicas_scratch_directory(
    tmp_path: Path, store: Store
) -> None:
    staging = StagingDirectory(tmp_path / "staging", store)
    media_id = str(uuid.uuid4())
    staging.path_for(media_id).write_bytes(b"z")
    await staging.local_copy(media_id, 10)  # never released: the replica crashed
    kept = staging.scratch_dir / "operator-notes.txt"
    kept.write_text("not a copy")
    again = StagingDirectory(tmp_path / "staging", store)
    assert list(again.scratch_dir.iterdir()) == [kept]
