"""The chatbot.queue.v1.QueueService servicer: translation only (see services.common.grpc_edge)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from typing import Any, TypeVar

import grpc
from chatbot.queue.v1 import queue_service_pb2 as q
from chatbot.queue.v1 import queue_service_pb2_grpc as q_grpc

from services.common.errors import InvalidInputError
from services.common.grpc_edge import error_status
from services.common.store import IdentityPair
from services.queue_svc import convert
from services.queue_svc.service import (
    AddItem,
    AddStatus,
    MediaUpdate,
    QueueService,
    UpdateResult,
)
from services.queue_svc.subscriptions import Delivery

# More than this in one AddMessages call is refused: one batch is one store write.
MAX_BATCH = 10_000
#: Bytes of messages after which a batched SubscribeResponse is sent and the next one
#: begun: one message more (at most 8,000 characters, 32 KB) keeps it under 4 MiB.
MAX_RESPONSE_BYTES = 3 * 1024 * 1024
# Messages per SubscribeResponse at most (SubscribeRequest.max_batch).
MAX_SUBSCRIBE_BATCH = 1000

_ADD_STATUS = {
    AddStatus.ADDED: q.ADD_STATUS_ADDED,
    AddStatus.DUPLICATE: q.ADD_STATUS_DUPLICATE,
    AddStatus.BOT_NOT_ACTIVE: q.ADD_STATUS_BOT_NOT_ACTIVE,
}
_UPDATE_STATUS = {
    UpdateResult.UPDATED: q.UPDATE_BY_MEDIA_ID_STATUS_UPDATED,
    UpdateResult.NOT_FOUND: q.UPDATE_BY_MEDIA_ID_STATUS_NOT_FOUND,
    UpdateResult.BOT_NOT_ACTIVE: q.UPDATE_BY_MEDIA_ID_STATUS_BOT_NOT_ACTIVE,
}


R = TypeVar("R")
Item = TypeVar("Item")


def _check(*problems: str) -> None:
    """RPC-specific rules beyond the field options (those the gRPC edge checks)."""
    found = [p for p in problems if p]
    if found:
        raise InvalidInputError("invalid request: " + "; ".join(found))


def _add_problems(request: q.AddMessageRequest, path: str = "") -> list[str]:
    if _content_missing(request):
        return [f"{path}message.content: required (only placeholders may be empty)"]
    return []


def _content_missing(request: q.AddMessageRequest) -> bool:
    return request.HasField("message") and not request.message.content


class QueueServicer(q_grpc.QueueServiceServicer):
    """Translation only: validation, error mapping and metrics live in the gRPC edge
    (services.common.grpc_edge)."""

    def __init__(self, service: QueueService) -> None:
        self._service = service

    async def AddMessage(  # noqa: N802 (gRPC method name)
        self, request: q.AddMessageRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> q.AddMessageResponse:
        _check(*_add_problems(request))
        result = await self._service.add_message(
            AddItem(request.bot_id, request.correspondent_id, convert.new_message(request.message))
        )
        return q.AddMessageResponse(id=result.id, duplicate=result.status is AddStatus.DUPLICATE)

    async def AddMessages(  # noqa: N802 (gRPC method name)
        self, request: q.AddMessagesRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> q.AddMessagesResponse:
        problems: list[str] = []
        if not request.messages:
            problems.append("messages: required (at least one)")
        if len(request.messages) > MAX_BATCH:
            problems.append(f"messages: at most {MAX_BATCH} per call")
        for i, item in enumerate(request.messages):
            if _content_missing(item):  # the path is spelled out only for a problem
                problems.extend(_add_problems(item, f"messages[{i}]."))
        _check(*problems)
        items = [
            AddItem(m.bot_id, m.correspondent_id, convert.new_message(m.message))
            for m in request.messages
        ]
        results = await self._service.add_messages(items)
        return q.AddMessagesResponse(
            results=[q.AddMessagesResult(status=_ADD_STATUS[r.status], id=r.id) for r in results]
        )

    async def InjectPlaceholder(  # noqa: N802 (gRPC method name)
        self, request: q.InjectPlaceholderRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> q.InjectPlaceholderResponse:
        return await self._inject(request)

    async def UpdateByMediaId(  # noqa: N802 (gRPC method name)
        self, request: q.UpdateByMediaIdRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> q.UpdateByMediaIdResponse:
        return await self._update(request)

    async def InjectPlaceholders(  # noqa: N802 (gRPC method name)
        self,
        request: q.InjectPlaceholdersRequest,
        context: grpc.aio.ServicerContext[object, object],
    ) -> q.InjectPlaceholdersResponse:
        outcomes = await _each("InjectPlaceholders", request.placeholders, self._inject)
        return q.InjectPlaceholdersResponse(
            results=[
                q.InjectPlaceholdersResult(code=code, error=error, response=response)
                for code, error, response in outcomes
            ]
        )

    async def UpdateByMediaIds(  # noqa: N802 (gRPC method name)
        self,
        request: q.UpdateByMediaIdsRequest,
        context: grpc.aio.ServicerContext[object, object],
    ) -> q.UpdateByMediaIdsResponse:
        outcomes = await self._update_all(request.updates)
        return q.UpdateByMediaIdsResponse(
            results=[
                q.UpdateByMediaIdsResult(code=code, error=error, response=response)
                for code, error, response in outcomes
            ]
        )

    async def _inject(self, request: q.InjectPlaceholderRequest) -> q.InjectPlaceholderResponse:
        _check(
            ""
            if request.message.provider_message_id or not request.HasField("message")
            else "message.provider_message_id: required for media (it deduplicates resends)",
        )
        message_id, duplicate = await self._service.inject_placeholder(
            convert.placeholder_request(request)
        )
        return q.InjectPlaceholderResponse(id=message_id, duplicate=duplicate)

    async def _update_all(
        self, requests: Sequence[q.UpdateByMediaIdRequest]
    ) -> list[tuple[int, str, q.UpdateByMediaIdResponse | None]]:
        """Each item answered as its unary call would be; the valid ones resolved together
        under one durability wait."""
        outcomes: list[tuple[int, str, q.UpdateByMediaIdResponse | None] | None] = []
        items: list[MediaUpdate] = []
        for request in requests:
            try:
                media_result = convert.media_result_json(request)
            except Exception as exc:
                code, details = error_status("UpdateByMediaIds", exc)
                outcomes.append((code.value[0], details, None))
                continue
            items.append(
                MediaUpdate(
                    request.bot_id,
                    request.correspondent_id,
                    request.media_processing_id,
                    request.content,
                    media_result,
                )
            )
            outcomes.append(None)
        answers = iter(await self._service.update_by_media_ids(items))
        done: list[tuple[int, str, q.UpdateByMediaIdResponse | None]] = []
        for outcome in outcomes:
            if outcome is not None:
                done.append(outcome)
                continue
            answer = next(answers)
            if isinstance(answer, Exception):
                code, details = error_status("UpdateByMediaIds", answer)
                done.append((code.value[0], details, None))
            else:
                status, message_id = answer
                response = q.UpdateByMediaIdResponse(
                    status=_UPDATE_STATUS[status], message_id=message_id
                )
                done.append((grpc.StatusCode.OK.value[0], "", response))
        return done

    async def _update(self, request: q.UpdateByMediaIdRequest) -> q.UpdateByMediaIdResponse:
        status, message_id = await self._service.update_by_media_id(
            request.bot_id,
            request.correspondent_id,
            request.media_processing_id,
            request.content,
            convert.media_result_json(request),
        )
        return q.UpdateByMediaIdResponse(status=_UPDATE_STATUS[status], message_id=message_id)

    async def PopReady(  # noqa: N802 (gRPC method name)
        self, request: q.PopReadyRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> q.PopReadyResponse:
        deliveries = await self._service.pop_ready(request.bot_id, request.limit)
        return q.PopReadyResponse(messages=[convert.addressed(d) for d in deliveries])

    async def StartBot(  # noqa: N802 (gRPC method name)
        self, request: q.StartBotRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> q.StartBotResponse:
        r = await self._service.start_bot(request.bot_id)
        return q.StartBotResponse(
            started=r.started,
            jobs_reactivated=r.jobs_reactivated,
            placeholders_restored=r.placeholders_restored,
            results_applied=r.results_applied,
        )

    async def StopBot(  # noqa: N802 (gRPC method name)
        self, request: q.StopBotRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> q.StopBotResponse:
        r = await self._service.stop_bot(request.bot_id)
        return q.StopBotResponse(
            stopped=r.stopped,
            messages_persisted=r.messages_persisted,
            jobs_parked=r.jobs_parked,
        )

    async def LearnIdentities(  # noqa: N802 (gRPC method name)
        self, request: q.LearnIdentitiesRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> q.LearnIdentitiesResponse:
        pairs = []
        problems = []
        for i, pair in enumerate(request.pairs):
            try:
                pairs.append(IdentityPair(pair.lid, pair.phone_jid))
            except InvalidInputError as exc:
                problems.append(f"pairs[{i}]: {exc}")
        _check(*problems)
        learned, merged = await self._service.learn_identities(request.bot_id, pairs)
        return q.LearnIdentitiesResponse(learned=learned, merged=merged)

    async def GetWindow(  # noqa: N802 (gRPC method name)
        self, request: q.GetWindowRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> q.GetWindowResponse:
        window = await self._service.window(request.bot_id, request.correspondent_id)
        return q.GetWindowResponse(
            messages=[convert.message_proto(m) for m in window.messages],
            total_characters=window.total_characters,
            next_id=window.next_id,
        )

    async def CommitCursor(  # noqa: N802 (gRPC method name)
        self, request: q.CommitCursorRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> q.CommitCursorResponse:
        _check("sequence: must be >= 0" if request.sequence < 0 else "")
        advanced = await self._service.commit_cursor(
            request.consumer_name, request.bot_id, request.sequence
        )
        return q.CommitCursorResponse(advanced=advanced)

    async def Subscribe(  # noqa: N802 (gRPC method name)
        self, request: q.SubscribeRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> AsyncIterator[q.SubscribeResponse]:
        bot_id = request.bot_id if request.HasField("bot_id") else None
        if bot_id is not None and not bot_id:
            raise InvalidInputError("invalid request: bot_id: must not be empty when set")
        consumer = request.consumer_name if request.HasField("consumer_name") else None
        _check("consumer_name: must not be empty when set" if consumer == "" else "")
        cursors: dict[str, int] = {}
        for i, cursor in enumerate(request.cursors):
            if cursor.after_sequence < 0:
                raise InvalidInputError(
                    f"invalid request: cursors[{i}].after_sequence: must be >= 0"
                )
            if cursor.bot_id in cursors:
                raise InvalidInputError(
                    f"invalid request: cursors[{i}].bot_id: {cursor.bot_id!r} is repeated"
                )
            cursors[cursor.bot_id] = cursor.after_sequence
        max_batch = request.max_batch
        _check(
            f"max_batch: at most {MAX_SUBSCRIBE_BATCH}" if max_batch > MAX_SUBSCRIBE_BATCH else ""
        )
        stream = self._service.stream(bot_id, cursors, consumer, max(1, max_batch))
        try:
            async for batch in stream:
                if max_batch > 1:
                    for response in _responses(batch):
                        yield response
                else:
                    for delivery in batch:
                        yield q.SubscribeResponse(message=convert.addressed(delivery))
        finally:
            await stream.aclose()


def _responses(batch: Sequence[Delivery]) -> Iterator[q.SubscribeResponse]:
    """A batch as SubscribeResponses of at most about MAX_RESPONSE_BYTES each: a gRPC
    client takes messages of up to 4 MiB, and a stream whose next response is larger
    fails on every reconnect, so its consumer would never get past it."""
    response = q.SubscribeResponse()
    size = 0
    for delivery in batch:
        item = response.messages.add()
        convert.set_addressed(item, delivery)
        size += item.ByteSize()
        if size >= MAX_RESPONSE_BYTES:
            yield response
            response = q.SubscribeResponse()
            size = 0
    if response.messages:
        yield response


async def _each(
    method: str, items: Sequence[Item], handle: Callable[[Item], Awaitable[R]]
) -> list[tuple[int, str, R | None]]:
    """Handles every item of a batched call as its unary call would (concurrently, as
    that many unary calls would run): (status code, details, response) per item, in
    order. The items' store writes share the store's group commit."""
    gathering = asyncio.gather(*(handle(item) for item in items), return_exceptions=True)
    try:
        answers = await gathering
    except asyncio.CancelledError:
        # The call was cancelled (its deadline passed, the client went away): the items
        # are cancelled with it, and their gathering's outcome is nobody's to log.
        gathering.add_done_callback(_consume)
        raise
    outcomes: list[tuple[int, str, R | None]] = []
    for answer in answers:
        if isinstance(answer, Exception):
            code, details = error_status(method, answer)
            outcomes.append((code.value[0], details, None))
        elif isinstance(answer, BaseException):
            raise answer  # cancelled with the call
        else:
            outcomes.append((grpc.StatusCode.OK.value[0], "", answer))
    return outcomes


def _consume(gathering: asyncio.Future[Any]) -> None:
    if not gathering.cancelled():
        gathering.exception()
