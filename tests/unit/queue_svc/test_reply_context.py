"""A media message that replies to another keeps its reply context from the frame to
the text the bot sees, also when its placeholder is rebuilt from the stored job."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from chatbot.common.v1 import details_pb2 as d
from chatbot.queue.v1 import queue_service_pb2 as q
from google.protobuf import json_format

from services.queue_svc.convert import details_json, message_proto
from services.queue_svc.correspondent_queue import CorrespondentQueue, UpdateStatus
from services.queue_svc.messages import QueueLimits
from services.queue_svc.recovery import job_message
from tests.unit.queue_svc.helpers import FakeClock, job, sqlite_store

REPLY = d.ReplyContext(quoted_message_id="WA-EARLIER", snippet="Which photo?")
LINE = '[Reply to message WA-EARLIER: "Which photo?"]'


def _details() -> str:
    message = q.NewMessage()
    message.reply_to.CopyFrom(REPLY)
    text = details_json(message)
    assert text is not None
    return text


async def test_a_placeholder_rebuilt_from_its_job_still_carries_the_reply(tmp_path: Path) -> None:
    new_job = dataclasses.replace(job("bot-1", "c1", 7, caption="this one?"), details=_details())
    async with sqlite_store(tmp_path) as store:
        assert await store.create_job(new_job)
        found = await store.get_job(new_job.media_processing_id)
    assert found is not None and found[1].details == new_job.details

    message, media = job_message(found[1])
    queue = CorrespondentQueue(QueueLimits(), clock=FakeClock())
    queue.inject_placeholder(message, media, new_job.media_processing_id, message_id=7)
    outcome, _ = queue.resolve(new_job.media_processing_id, "[Image] a cat\nCaption: this one?")
    assert outcome.status is UpdateStatus.UPDATED
    [entry] = queue.window()
    assert entry.content == f"{LINE}\n[Image] a cat\nCaption: this one?"
    assert entry.message_size == len(entry.content)
    delivered = message_proto(entry)
    assert delivered.reply_to == REPLY and not delivered.HasField("details")
    assert json_format.MessageToDict(delivered)["replyTo"]["quotedMessageId"] == "WA-EARLIER"
