"""A message read back from `queues` and written again keeps every shared field.

`recovery.queued_message` and `ingestion.stored_message` copy the fields both message
types take from `MessageFields` positionally; a field added to one type only, or in
another order, must show up here rather than as a silently shifted value.
"""

from __future__ import annotations

import dataclasses
import json

from services.common.store import MessageFields, StoredMessage
from services.queue_svc.bot_queues import BotQueues, ReadyMessage
from services.queue_svc.ingestion import stored_message
from services.queue_svc.messages import QueueLimits
from services.queue_svc.recovery import queued_message
from tests.helpers.clock import utc_now
from tests.unit.queue_svc.helpers import FakeClock


def test_a_stored_message_survives_the_queue_round_trip_field_by_field() -> None:
    original = StoredMessage(
        bot_id="bot",
        provider_name="whatsapp_baileys",
        correspondent_id="c1",
        id=7,
        content="[Image] a cat",
        sender="Alice",
        source="user",
        originating_time=utc_now(-60),
        provider_message_id="WA-7",
        message_size=13,
        group_id="g@g.us",
        group_name="Family",
        mime_type="image/jpeg",
        original_filename="cat.jpg",
        media_kind="MEDIA_KIND_IMAGE",
        details=json.dumps({"reply_to": {"id": "WA-6"}}),
    )
    entry = queued_message(original)
    shared = [f.name for f in dataclasses.fields(MessageFields)]
    assert {name: getattr(entry, name) for name in shared} == {
        name: getattr(original, name) for name in shared
    }
    assert entry.media_processing_id is None and not entry.is_placeholder

    bot = BotQueues("bot", "whatsapp_baileys", QueueLimits(), clock=FakeClock())
    again = stored_message(bot, ReadyMessage("c1", entry))
    assert again == original
