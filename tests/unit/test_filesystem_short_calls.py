"""The filesystem media store's short calls: deletes, links and small copies run where
the caller says (media_svc: its BatchThread). A scratch file on the same filesystem is a
hard link; elsewhere a copy, and a copy larger than SHORT_COPY_BYTES is declined there
untouched and made on an executor thread instead, with the same bytes and checks."""

from __future__ import annotations

import asyncio
import os
import random
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import ParamSpec, TypeVar

import pytest

from services.common.media_store import FilesystemMediaStore, MediaTooLargeError
from services.common.media_store._filesystem import SHORT_COPY_BYTES

P = ParamSpec("P")
T = TypeVar("T")


class Recorder:
    """An Offload that runs each call on an executor thread and notes what it ran."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []

    async def __call__(self, func: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        result = await asyncio.to_thread(func, *args, **kwargs)
        self.calls.append((getattr(func, "__name__", "?"), result))
        return result


async def _one(data: bytes) -> AsyncIterator[bytes]:
    yield data


@pytest.fixture
def other_filesystem(tmp_path: Path) -> Iterator[Path]:
    """A directory on another filesystem than tmp_path (tmpfs), where no link can go."""
    if not Path("/dev/shm").is_dir():
        pytest.skip("no /dev/shm here")
    directory = Path(tempfile.mkdtemp(dir="/dev/shm"))
    try:
        if directory.stat().st_dev == tmp_path.stat().st_dev:
            pytest.skip("/dev/shm is on the same filesystem as the test's directory")
        yield directory
    finally:
        for leftover in directory.iterdir():
            leftover.unlink()
        directory.rmdir()


async def _staged(tmp_path: Path, size: int) -> tuple[FilesystemMediaStore, Recorder, str, bytes]:
    short = Recorder()
    media = FilesystemMediaStore(tmp_path / "staging", short)
    data = random.Random(size).randbytes(size)
    media_id = str(uuid.uuid4())
    await media.put(media_id, _one(data), 4 * SHORT_COPY_BYTES)
    return media, short, media_id, data


@pytest.mark.parametrize("size", [0, 5, SHORT_COPY_BYTES + 1])
async def test_on_one_filesystem_a_copy_is_a_link_of_any_size(tmp_path: Path, size: int) -> None:
    media, short, media_id, data = await _staged(tmp_path, size)
    copy = tmp_path / "copy"
    assert await media.copy_to(media_id, copy, 4 * SHORT_COPY_BYTES) == size
    assert copy.read_bytes() == data
    assert copy.stat().st_ino == media.path_for(media_id).stat().st_ino
    assert short.calls == [("_copy", size)]
    # Deleting the object leaves the copy's bytes, as with a copy.
    assert await media.delete(media_id) == size
    assert short.calls[-1] == ("_take", size)
    assert copy.read_bytes() == data


@pytest.mark.parametrize("size", [0, 5, SHORT_COPY_BYTES, SHORT_COPY_BYTES + 1])
async def test_across_filesystems_small_copies_stay_short_and_large_ones_move(
    tmp_path: Path, other_filesystem: Path, size: int
) -> None:
    media, short, media_id, data = await _staged(tmp_path, size)
    copy = other_filesystem / "copy"
    assert await media.copy_to(media_id, copy, 4 * SHORT_COPY_BYTES) == size
    assert copy.read_bytes() == data
    assert copy.stat().st_ino != media.path_for(media_id).stat().st_ino
    # Small: copied among the short calls. Larger: declined there, copied elsewhere.
    assert short.calls == [("_copy", size if size <= SHORT_COPY_BYTES else None)]


async def test_the_size_limit_holds_before_a_link_or_a_copy(
    tmp_path: Path, other_filesystem: Path
) -> None:
    media, _, media_id, _ = await _staged(tmp_path, SHORT_COPY_BYTES + 10)
    for target in (tmp_path / "copy", other_filesystem / "copy"):
        with pytest.raises(MediaTooLargeError):
            await media.copy_to(media_id, target, SHORT_COPY_BYTES + 9)
        assert not target.exists()
    assert os.listdir(media.root) == [media_id]
