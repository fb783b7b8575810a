"""Builders shared by the queue_svc unit tests."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from services.queue_svc.messages import MediaInfo, NewMessage

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


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
