"""The gateway's ChatHolds: after a RETRY, a chat's later messages wait for that one."""

from __future__ import annotations

import asyncio

from chatbot.queue.v1 import queue_service_pb2 as q
from chatbot.wire.v1 import frames_pb2 as w

from services.gateway.queue_writer import ACCEPTED, HOLD_SECONDS, AckOutcome, ChatHolds, _Pending

RETRY = AckOutcome(w.ACK_STATUS_RETRY, "queue_svc UNAVAILABLE")


def item(chat: str, pid: str, loop: asyncio.AbstractEventLoop) -> _Pending:
    request = q.AddMessageRequest(bot_id="bot", correspondent_id=chat)
    request.message.provider_message_id = pid
    outcomes: list[AckOutcome] = []
    return _Pending(request, outcomes.append)


def pids(items: list[_Pending]) -> list[str]:
    return [i.request.message.provider_message_id for i in items]


async def test_a_retry_holds_the_chat_until_that_message_is_decided() -> None:
    loop = asyncio.get_running_loop()
    now = [0.0]
    holds = ChatHolds(clock=lambda: now[0])
    a1, a2, b1 = item("a", "A1", loop), item("a", "A2", loop), item("b", "B1", loop)
    holds.decided(a1, RETRY)
    sent, held = holds.admit([a2, b1])
    assert pids(sent) == ["B1"] and pids(held) == ["A2"], "another chat never waits"
    # The resend of A1 goes out, with what follows it in the same batch.
    a1_again, a2_again = item("a", "A1", loop), item("a", "A2", loop)
    sent, held = holds.admit([a2, a1_again, a2_again])
    assert pids(sent) == ["A1", "A2"] and pids(held) == ["A2"]
    holds.decided(a1_again, ACCEPTED)
    sent, held = holds.admit([item("a", "A3", loop)])
    assert pids(sent) == ["A3"] and held == []


async def test_a_later_retry_does_not_move_the_hold_and_a_hold_expires() -> None:
    loop = asyncio.get_running_loop()
    now = [0.0]
    holds = ChatHolds(clock=lambda: now[0])
    holds.decided(item("a", "A1", loop), RETRY)
    holds.decided(item("a", "A2", loop), RETRY)  # decided in the same batch as A1
    sent, held = holds.admit([item("a", "A2", loop)])
    assert sent == [] and pids(held) == ["A2"], "the chat waits for A1, the first one"
    # A Node that lost its outbox never resends A1: the chat is not held forever.
    now[0] = HOLD_SECONDS + 1
    sent, held = holds.admit([item("a", "A2", loop)])
    assert pids(sent) == ["A2"] and held == []


async def test_messages_without_a_whatsapp_id_never_hold_a_chat() -> None:
    loop = asyncio.get_running_loop()
    holds = ChatHolds()
    holds.decided(item("a", "", loop), RETRY)
    sent, held = holds.admit([item("a", "A2", loop)])
    assert pids(sent) == ["A2"] and held == []
