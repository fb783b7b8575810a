"""The one gRPC edge of every Python service: validation, error mapping and RPC metrics.

A server interceptor wraps every unary-unary and unary-stream method: the request is
checked against the `(chatbot.options.v1.field)` constraints of its descriptor, any
exception is classified once (services.common.errors.classify) and mapped to a status
code here, and latency and count are recorded by method and code. Servicers only
translate between protos and the domain.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import grpc
from google.protobuf.message import Message
from prometheus_client import CollectorRegistry, Histogram

from services.common.errors import (
    ChatbotError,
    InvalidInputError,
    NotFoundError,
    PreconditionError,
    UnavailableError,
    classify,
)
from services.common.validation import validate_message

log = logging.getLogger(__name__)

Context = grpc.aio.ServicerContext[Any, Any]
#: Called once per RPC with (method, status code name, seconds).
RpcObserver = Callable[[str, str, float], None]

#: Domain error → status code; the first matching class wins.
CODES: tuple[tuple[type[ChatbotError], grpc.StatusCode], ...] = (
    (InvalidInputError, grpc.StatusCode.INVALID_ARGUMENT),
    (NotFoundError, grpc.StatusCode.NOT_FOUND),
    (PreconditionError, grpc.StatusCode.FAILED_PRECONDITION),
    (UnavailableError, grpc.StatusCode.UNAVAILABLE),
)
# Health and reflection requests carry no contract options of ours.
_UNVALIDATED_PREFIXES = ("/grpc.",)


_BY_NUMBER = {code.value[0]: code for code in grpc.StatusCode}


def status_of(number: int) -> grpc.StatusCode:
    """The status code a batched call's item result carries as a number."""
    return _BY_NUMBER.get(number, grpc.StatusCode.UNKNOWN)


def error_for_status(code: grpc.StatusCode, details: str) -> ChatbotError:
    """What a status answered by another of our services means (the reverse of CODES).

    Codes without a domain meaning (INTERNAL, DEADLINE_EXCEEDED, …) count as the peer
    being unavailable: the request may well succeed later.
    """
    for kind, mapped in CODES:
        if mapped == code:
            return kind(details)
    return UnavailableError(f"{code.name}: {details}")


class RpcMetrics:
    """Latency histogram by method and code; its `_count` series counts the calls."""

    def __init__(self, registry: CollectorRegistry, prefix: str) -> None:
        self.latency = Histogram(
            f"{prefix}_rpc_latency_seconds",
            "Server-side RPC latency (a stream's lifetime for streaming RPCs)",
            ["method", "code"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5),
            registry=registry,
        )

    def observe(self, method: str, code: str, seconds: float) -> None:
        self.latency.labels(method, code).observe(seconds)


def status_code(
    error: ChatbotError, extra: Mapping[type[ChatbotError], grpc.StatusCode] | None = None
) -> grpc.StatusCode:
    """The one mapping from domain errors to gRPC status codes."""
    for kind, code in (*(extra or {}).items(), *CODES):
        if isinstance(error, kind):
            return code
    return grpc.StatusCode.INTERNAL


if TYPE_CHECKING:
    _Interceptor = grpc.aio.ServerInterceptor[Any, Any]
else:  # generic only in the type stubs
    _Interceptor = grpc.aio.ServerInterceptor


class GrpcEdge(_Interceptor):
    """Validation, error mapping and metrics for every RPC of one server."""

    def __init__(
        self,
        observe: RpcObserver,
        extra_codes: Mapping[type[ChatbotError], grpc.StatusCode] | None = None,
    ) -> None:
        self._observe = observe
        self._extra = dict(extra_codes or {})

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        full = str(handler_call_details.method)
        method = full.rsplit("/", 1)[-1]
        validate = not full.startswith(_UNVALIDATED_PREFIXES)
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(method, validate, cast(Any, handler.unary_unary)),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._stream(method, validate, cast(Any, handler.unary_stream)),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler  # client/bidi streams (reflection): passed through untouched

    def _unary(
        self, method: str, validate: bool, call: Callable[[Any, Context], Awaitable[Any]]
    ) -> Callable[[Any, Context], Awaitable[Any]]:
        async def wrapped(request: Any, context: Context) -> Any:
            async with _EdgeCall(method, context, self._status, self._observe):
                if validate:
                    _validate(request)
                return await call(request, context)

        return wrapped

    def _stream(
        self,
        method: str,
        validate: bool,
        call: Callable[[Any, Context], AsyncIterator[Any]],
    ) -> Callable[[Any, Context], AsyncIterator[Any]]:
        async def wrapped(request: Any, context: Context) -> AsyncIterator[Any]:
            async with _EdgeCall(method, context, self._status, self._observe):
                if validate:
                    _validate(request)
                async for response in call(request, context):
                    yield response

        return wrapped

    def _status(self, method: str, error: Exception) -> tuple[grpc.StatusCode, str]:
        return error_status(method, error, self._extra)


def error_status(
    method: str,
    error: Exception,
    extra: Mapping[type[ChatbotError], grpc.StatusCode] | None = None,
) -> tuple[grpc.StatusCode, str]:
    """The status code and details a failed call answers (also for one item of a batched
    call, which answers it in its result instead of aborting); a bug is logged here."""
    classified = classify(error)
    code = grpc.StatusCode.INTERNAL
    if classified is not None:
        code = status_code(classified, extra)
    if code == grpc.StatusCode.INTERNAL:
        log.error("%s failed unexpectedly", method, exc_info=error)
        return code, f"internal error: {type(error).__name__}: {error}"
    return code, str(classified)


@dataclass(slots=True)
class _EdgeCall:
    """One RPC at the edge, around the handler (a unary call, or a whole stream): an
    exception becomes its status code (an abort, which raises AbortError), an abort the
    handler made itself keeps its code, and the call is observed once, with its code."""

    method: str
    context: Context
    status: Callable[[str, Exception], tuple[grpc.StatusCode, str]]
    observe: RpcObserver
    started: float = field(default_factory=time.perf_counter)

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(
        self, _kind: type[BaseException] | None, error: BaseException | None, _tb: object
    ) -> None:
        code = "OK"  # also for a cancelled call: no status was sent
        try:
            if isinstance(error, grpc.aio.AbortError):
                code = _aborted_code(self.context)
            elif isinstance(error, Exception):
                status, message = self.status(self.method, error)
                code = status.name
                await self.context.abort(status, message)
        finally:
            self.observe(self.method, code, time.perf_counter() - self.started)


def _validate(request: Any) -> None:
    if isinstance(request, Message):
        problems = validate_message(request)
        if problems:
            raise InvalidInputError("invalid request: " + "; ".join(problems))


def _aborted_code(context: Context) -> str:
    code = context.code()
    return code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN"
