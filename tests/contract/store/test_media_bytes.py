"""The MediaStore backends, one contract: the filesystem backend beside the SQLite leg,
GridFS (PyMongo's AsyncGridFSBucket) on the MongoDB legs (SecantusDB replica set and
standalone); and the per-bot counter kept exact by `StagedMedia` under concurrency."""

from __future__ import annotations

import asyncio
import os
import random
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from bson import Binary, ObjectId
from gridfs import AsyncGridFSBucket

from services.common.errors import InvalidInputError
from services.common.media_store import (
    CHUNK_BYTES,
    FilesystemMediaStore,
    GridFSMediaStore,
    MediaMissingError,
    MediaRefusedError,
    MediaStore,
    MediaTooLargeError,
    StagedMedia,
)
from services.common.store import Store
from services.common.store.mongo import MongoStore

MAX = 4 * CHUNK_BYTES


@pytest.fixture
def media(store: Store, tmp_path: Path) -> MediaStore:
    if isinstance(store, MongoStore):
        return GridFSMediaStore(store.media_database)
    return FilesystemMediaStore(tmp_path / "staging")


def _id() -> str:
    return str(uuid.uuid4())


async def _chunks(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def _failing(data: bytes) -> AsyncIterator[bytes]:
    yield data
    raise ConnectionResetError("client went away mid-upload")


def _payload(rng: random.Random, size: int) -> bytes:
    return rng.randbytes(size)


async def _read(media: MediaStore, media_id: str, directory: Path, limit: int = MAX) -> bytes:
    target = directory / f"copy-{uuid.uuid4().hex}"
    await media.copy_to(media_id, target, limit)
    return target.read_bytes()


async def _complete_ids(media: MediaStore) -> set[str | None]:
    return {e.media_processing_id for e in await media.entries() if not e.partial}


async def test_an_object_round_trips_in_chunks_and_is_deleted_once(
    media: MediaStore, tmp_path: Path
) -> None:
    data = _payload(random.Random(1), 2 * CHUNK_BYTES + 123)
    media_id = _id()
    result = await media.put(media_id, _chunks(data), MAX, bot_id="bot-a")
    assert (result.size, result.replaced_bytes) == (len(data), 0)
    assert await media.size(media_id) == len(data)
    assert await _read(media, media_id, tmp_path) == data
    assert await media.delete(media_id) == len(data)
    assert await media.delete(media_id) is None
    assert await media.size(media_id) is None
    with pytest.raises(MediaMissingError):
        await _read(media, media_id, tmp_path)


async def test_a_second_write_of_an_id_replaces_the_first_and_says_by_how_much(
    media: MediaStore, tmp_path: Path
) -> None:
    rng = random.Random(2)
    first, second = _payload(rng, CHUNK_BYTES + 5), _payload(rng, 1000)
    media_id = _id()
    await media.put(media_id, _chunks(first), MAX)
    result = await media.put(media_id, _chunks(second), MAX)
    assert (result.size, result.replaced_bytes) == (len(second), len(first))
    assert await _read(media, media_id, tmp_path) == second
    assert [e.size for e in await media.entries()] == [len(second)]


async def test_an_oversized_write_is_refused_and_leaves_nothing(media: MediaStore) -> None:
    data = _payload(random.Random(3), MAX + 1)
    with pytest.raises(MediaTooLargeError):
        await media.put(_id(), _chunks(data), MAX)
    assert await media.entries() == []


async def test_a_write_cut_off_mid_stream_leaves_nothing_and_keeps_the_old_object(
    media: MediaStore, tmp_path: Path
) -> None:
    rng = random.Random(4)
    kept = _payload(rng, 5000)
    media_id = _id()
    await media.put(media_id, _chunks(kept), MAX)
    with pytest.raises(ConnectionResetError):
        await media.put(media_id, _failing(_payload(rng, CHUNK_BYTES + 1)), MAX)
    assert await _read(media, media_id, tmp_path) == kept
    assert [(e.media_processing_id, e.partial) for e in await media.entries()] == [
        (media_id, False)
    ]


async def test_a_copy_beyond_the_limit_is_refused_before_anything_is_copied(
    media: MediaStore, tmp_path: Path
) -> None:
    media_id = _id()
    await media.put(media_id, _chunks(b"x" * 2000), MAX)
    target = tmp_path / "too-large"
    with pytest.raises(MediaTooLargeError):
        await media.copy_to(media_id, target, 1999)
    assert not target.exists()


@pytest.mark.parametrize(
    "bad", ["", "../etc/passwd", "ABCDEF", str(uuid.UUID(int=1, version=1)), "a/b"]
)
async def test_anything_but_a_uuid4_is_refused_everywhere(
    media: MediaStore, tmp_path: Path, bad: str
) -> None:
    with pytest.raises(InvalidInputError):
        await media.put(bad, _chunks(b"x"), MAX)
    with pytest.raises(InvalidInputError):
        await media.copy_to(bad, tmp_path / "x", MAX)
    with pytest.raises(InvalidInputError):
        await media.delete(bad)
    with pytest.raises(InvalidInputError):
        await media.size(bad)
    assert await media.entries() == []


async def test_entries_list_objects_with_their_age_and_remove_them_once(
    media: MediaStore,
) -> None:
    ids = [_id() for _ in range(3)]
    for n, media_id in enumerate(ids):
        await media.put(media_id, _chunks(b"y" * (n + 1)), MAX, bot_id="bot-a")
    entries = await media.entries()
    assert sorted((e.media_processing_id, e.size) for e in entries) == sorted(
        (media_id, n + 1) for n, media_id in enumerate(ids)
    )
    assert all(0 <= e.age_seconds < 60 and not e.partial for e in entries)
    if media.kind == "gridfs":  # GridFS records whose bytes they are
        assert {e.bot_id for e in entries} == {"bot-a"}
    first = entries[0]
    assert await media.remove_entry(first) == first.size
    assert await media.remove_entry(first) is None
    assert first.media_processing_id not in await _complete_ids(media)


async def test_a_partial_write_left_by_a_crash_is_listed_as_partial_and_removable(
    media: MediaStore, store: Store
) -> None:
    media_id = _id()
    if isinstance(media, FilesystemMediaStore):
        (media.root / f"{media_id}.0123456789abcdef.part").write_bytes(b"z" * 10)
    else:
        assert isinstance(store, MongoStore)
        # What a process killed mid-upload leaves: chunks and no files document.
        files_id = ObjectId()
        await store.media_database["media.chunks"].insert_many(
            [{"files_id": files_id, "n": n, "data": Binary(b"z" * 10)} for n in range(2)]
        )
    [entry] = await media.entries()
    assert entry.partial and entry.media_processing_id is None
    assert await media.remove_entry(entry) is not None
    assert await media.entries() == []


async def test_racing_writes_and_deletes_keep_the_counter_equal_to_the_bytes_stored(
    media: MediaStore, store: Store, tmp_path: Path
) -> None:
    """Writes, retried writes of the same ids (a Node crash) and double deletes, all at
    once: the bot's counter ends equal to the bytes its objects hold."""
    staged = StagedMedia(media, store)
    rng = random.Random(24)
    ids = [_id() for _ in range(12)]

    async def write(media_id: str, size: int) -> None:
        await staged.stage("bot-a", media_id, _chunks(b"q" * size, 4096), MAX)

    first = [write(media_id, rng.randrange(1, 3 * CHUNK_BYTES)) for media_id in ids]
    await asyncio.gather(*first)
    doomed = ids[:5]
    retried = ids[5:9]
    await asyncio.gather(
        *(staged.discard("bot-a", media_id) for media_id in doomed),
        *(staged.discard("bot-a", media_id) for media_id in doomed),
        *(write(media_id, rng.randrange(1, 3 * CHUNK_BYTES)) for media_id in retried),
        *(write(media_id, rng.randrange(1, 3 * CHUNK_BYTES)) for media_id in retried),
    )
    remaining = [await media.size(media_id) for media_id in ids]
    assert remaining[:5] == [None] * 5 and None not in remaining[5:]
    assert await store.media_usage("bot-a") == sum(s for s in remaining if s is not None)
    # Each retried id holds one whole object, readable in full.
    for media_id, size in zip(retried, remaining[5:9], strict=True):
        assert len(await _read(media, media_id, tmp_path)) == size
    results = await asyncio.gather(*(staged.discard("bot-a", m) for m in ids))
    assert results == [False] * 5 + [True] * 7
    assert await store.media_usage("bot-a") == 0


async def test_gridfs_objects_are_in_gridfs_layout_for_gridfs_tools(store: Store) -> None:
    if not isinstance(store, MongoStore):
        pytest.skip("GridFS runs on the MongoDB legs")
    media = GridFSMediaStore(store.media_database)
    data = _payload(random.Random(5), 3 * CHUNK_BYTES + 7)
    media_id = _id()
    await media.put(media_id, _chunks(data, 1000), MAX, bot_id="bot-a")
    bucket = AsyncGridFSBucket(store.media_database, bucket_name="media")
    download = await bucket.open_download_stream_by_name(media_id)
    assert await download.read() == data
    assert download.metadata == {"bot_id": "bot-a"}


async def test_filesystem_refuses_and_removes_a_symlink_in_place_of_an_object(
    tmp_path: Path,
) -> None:
    media = FilesystemMediaStore(tmp_path / "staging")
    secret = tmp_path / "secret"
    secret.write_bytes(b"not yours")
    media_id = _id()
    os.symlink(secret, media.root / media_id)
    assert await media.size(media_id) is None
    with pytest.raises(MediaRefusedError):
        await media.copy_to(media_id, tmp_path / "copy", MAX)
    assert not (tmp_path / "copy").exists()
    assert list(media.root.iterdir()) == []
    assert secret.read_bytes() == b"not yours"


async def test_an_orphan_removed_by_the_cleanup_releases_its_bytes_where_its_bot_is_known(
    media: MediaStore, store: Store
) -> None:
    staged = StagedMedia(media, store)
    media_id = _id()
    await staged.stage("bot-a", media_id, _chunks(b"o" * 900), MAX)
    [entry] = await media.entries()
    assert await staged.discard_entry(entry)
    assert not await staged.discard_entry(entry)
    # GridFS records the bot with the object; a bare file does not say whose it was.
    assert await store.media_usage("bot-a") == (0 if media.kind == "gridfs" else 900)
