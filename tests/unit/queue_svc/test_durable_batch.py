"""DurableBatch: one waiter for every message of an AddMessages call."""

from __future__ import annotations

import pytest

from services.common.errors import UnavailableError
from services.queue_svc.ingestion import DurableBatch


async def test_it_is_done_once_every_message_it_counts_is_durable() -> None:
    batch = DurableBatch()
    for _ in range(3):
        batch.add()
    batch.set_result(None)
    batch.set_result(None)
    assert not batch.done()
    batch.set_result(None)
    assert batch.done() and batch.future.result() is None


async def test_the_first_failure_fails_it_and_later_answers_change_nothing() -> None:
    batch = DurableBatch()
    batch.add()
    batch.add()
    batch.set_exception(UnavailableError("store write failed"))
    batch.set_result(None)
    batch.set_exception(UnavailableError("again"))
    with pytest.raises(UnavailableError, match="store write failed"):
        batch.future.result()
