"""Builders shared by the queue_svc unit tests."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from services.common.store import NewMediaJob, Store, StoreConfig, StoredMessage, open_store
from services.queue_svc.messages import MediaInfo, NewMessage
from tests.helpers.clock import utc_now

# Unit tests inject their clock; T0 only anchors the originating times they build.
T0 = utc_now()


class FakeClock:
    """A clock the test moves by hand (seconds)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def text(content: str = "hello", pid: str = "", sender: str = "u@s.whatsapp.net") -> NewMessage:
    return NewMessage(
        content=content, sender=sender, source="user", originating_time=T0, provider_message_id=pid
    )


IMAGE = MediaInfo(mime_type="image/jpeg", media_kind="MEDIA_KIND_IMAGE")


def media_id() -> str:
    return str(uuid.uuid4())


def job(
    bot_id: str,
    correspondent_id: str,
    message_id: int,
    *,
    media_processing_id: str | None = None,
    pid: str = "",
    caption: str = "",
) -> NewMediaJob:
    """A media job as InjectPlaceholder would record it (for recovery tests)."""
    return NewMediaJob(
        media_processing_id=media_processing_id or media_id(),
        bot_id=bot_id,
        provider_name="whatsapp_baileys",
        correspondent_id=correspondent_id,
        message_id=message_id,
        sender="u@s.whatsapp.net",
        source="user",
        originating_time=T0,
        provider_message_id=pid or f"WA-{message_id}-{uuid.uuid4().hex[:6]}",
        caption=caption,
        mime_type="image/jpeg",
        media_kind="MEDIA_KIND_IMAGE",
        original_filename=None,
        file_size=10,
        route="staged|MEDIA_KIND_IMAGE|image/jpeg",
        pool="Image",
        has_staged_file=True,
    )


def stored(bot_id: str, correspondent_id: str, message_id: int, pid: str = "") -> StoredMessage:
    return StoredMessage(
        bot_id=bot_id,
        provider_name="whatsapp_baileys",
        correspondent_id=correspondent_id,
        id=message_id,
        content=f"m{message_id}",
        sender="u@s.whatsapp.net",
        source="user",
        originating_time=T0,
        provider_message_id=pid,
        message_size=len(f"m{message_id}"),
    )


@asynccontextmanager
async def sqlite_store(path: Path) -> AsyncIterator[Store]:
    store = await open_store(StoreConfig(backend="sqlite", sqlite_path=path / "chatbot.sqlite3"))
    try:
        yield store
    finally:
        await store.close()
