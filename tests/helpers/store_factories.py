"""Builders of store values for tests: valid by default, any field overridable."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from services.common.store import NewMediaJob, StoredMessage, truncate_to_millis


def now_ms() -> datetime:
    """Now, at the millisecond precision every adapter stores."""
    return truncate_to_millis(datetime.now(UTC))


def new_job(**overrides: Any) -> NewMediaJob:
    fields: dict[str, Any] = {
        "media_processing_id": str(uuid.uuid4()),
        "bot_id": "bot-1",
        "provider_name": "whatsapp_baileys",
        "correspondent_id": "4915100000001@s.whatsapp.net",
        "message_id": 7,
        "sender": "Alice",
        "source": "user",
        "originating_time": now_ms(),
        "provider_message_id": f"WA-{uuid.uuid4().hex[:12]}",
        "caption": "look at this",
        "mime_type": "image/jpeg",
        "media_kind": "MEDIA_KIND_IMAGE",
        "original_filename": None,
        "file_size": 12_345,
        "route": "staged|MEDIA_KIND_IMAGE|image/jpeg",
        "pool": "image",
        "has_staged_file": True,
        "group_id": None,
        "group_name": None,
    }
    fields.update(overrides)
    return NewMediaJob(**fields)


def message(message_id: int, **overrides: Any) -> StoredMessage:
    content = overrides.pop("content", f"message {message_id}")
    fields: dict[str, Any] = {
        "bot_id": "bot-1",
        "provider_name": "whatsapp_baileys",
        "correspondent_id": "4915100000001@s.whatsapp.net",
        "id": message_id,
        "content": content,
        "sender": "Alice",
        "source": "user",
        "originating_time": now_ms(),
        "provider_message_id": f"WA-{message_id}",
        "message_size": len(content),
    }
    fields.update(overrides)
    return StoredMessage(**fields)


def bare(messages: Iterable[StoredMessage]) -> list[StoredMessage]:
    """The messages without the delivery sequence the store assigned (to compare them with
    what was inserted)."""
    return [replace(m, sequence=None) for m in messages]


def bare_map(found: Mapping[str, Iterable[StoredMessage]]) -> dict[str, list[StoredMessage]]:
    return {key: bare(messages) for key, messages in found.items()}
