"""The filesystem media store's short calls: deletes and small copies run where the
caller says (media_svc: its BatchThread); a copy larger than SHORT_COPY_BYTES is declined
there untouched and made on an executor thread instead, with the same bytes and checks."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator, Callable
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


@pytest.mark.parametrize("size", [0, 5, SHORT_COPY_BYTES, SHORT_COPY_BYTES + 1])
async def test_copies_of_any_size_arrive_whole(tmp_path: Path, size: int) -> None:
    short = Recorder()
    media = FilesystemMediaStore(tmp_path / "staging", short)
    data = random.Random(size).randbytes(size)
    media_id = str(uuid.uuid4())
    await media.put(media_id, _one(data), 4 * SHORT_COPY_BYTES)
    copy = tmp_path / "copy"
    assert await media.copy_to(media_id, copy, 4 * SHORT_COPY_BYTES) == size
    assert copy.read_bytes() == data
    # Small: copied among the short calls. Larger: declined there, copied elsewhere.
    assert short.calls == [("_copy", size if size <= SHORT_COPY_BYTES else None)]
    assert await media.delete(media_id) == size
    assert short.calls[-1] == ("_take", size)


async def test_the_size_limit_holds_before_a_copy_is_declined(tmp_path: Path) -> None:
    media = FilesystemMediaStore(tmp_path / "staging", Recorder())
    media_id = str(uuid.uuid4())
    await media.put(media_id, _one(b"x" * (SHORT_COPY_BYTES + 10)), 4 * SHORT_COPY_BYTES)
    with pytest.raises(MediaTooLargeError):
        await media.copy_to(media_id, tmp_path / "copy", SHORT_COPY_BYTES + 9)
    assert not (tmp_path / "copy").exists()
