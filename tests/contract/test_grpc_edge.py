"""The gRPC edge: one classification of errors, request validation and RPC metrics."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

import grpc
import pytest
from chatbot.queue.v1 import queue_service_pb2 as q
from chatbot.queue.v1 import queue_service_pb2_grpc as q_grpc
from prometheus_client import CollectorRegistry

from services.common.errors import InvalidInputError, UnavailableError, classify
from services.common.grpc_edge import RpcMetrics
from services.queue_svc.server import grpc_edge
from tests.helpers.grpc_harness import serve_on_loopback


def _sqlite_overflow() -> Exception:
    try:
        sqlite3.connect(":memory:").execute("SELECT ?", (2**63,))
    except OverflowError as error:
        return error
    raise AssertionError("SQLite took an integer beyond 64 bits")


def _sqlite_unopenable() -> Exception:
    try:
        sqlite3.connect("/nonexistent-dir/x.sqlite3").execute("SELECT 1")
    except sqlite3.OperationalError as error:
        return error
    raise AssertionError("SQLite opened a file in a missing directory")


def test_store_errors_caused_by_the_input_are_invalid_input() -> None:
    assert isinstance(classify(_sqlite_overflow()), InvalidInputError)
    assert isinstance(
        classify(UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogate")), InvalidInputError
    )
    assert isinstance(classify(_sqlite_unopenable()), UnavailableError)
    assert isinstance(classify(ConnectionResetError()), UnavailableError)
    assert classify(KeyError("bug")) is None


class _Raising(q_grpc.QueueServiceServicer):
    """Raises what a domain call below the servicer would raise."""

    def __init__(self, make: Callable[[], Exception]) -> None:
        self._make = make

    async def StartBot(  # noqa: N802 (gRPC method name)
        self, request: q.StartBotRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> q.StartBotResponse:
        raise self._make()


@pytest.mark.parametrize(
    ("make", "code"),
    [
        (_sqlite_overflow, grpc.StatusCode.INVALID_ARGUMENT),
        (_sqlite_unopenable, grpc.StatusCode.UNAVAILABLE),
        (lambda: UnavailableError("store down"), grpc.StatusCode.UNAVAILABLE),
        (lambda: KeyError("bug"), grpc.StatusCode.INTERNAL),
    ],
)
async def test_every_failure_maps_to_one_status_and_is_counted(
    make: Callable[[], Exception], code: grpc.StatusCode
) -> None:
    registry = CollectorRegistry()
    edge = grpc_edge(RpcMetrics(registry, "t").observe)
    # Only StartBot is implemented; the others answer UNIMPLEMENTED, as the base class does.
    servicer = _Raising(make)  # type: ignore[abstract]
    async with serve_on_loopback(
        lambda s: q_grpc.add_QueueServiceServicer_to_server(servicer, s),
        interceptors=[edge],
    ) as channel:
        stub = q_grpc.QueueServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.StartBot(q.StartBotRequest(bot_id="b"))
        assert caught.value.code() == code
        # An invalid request never reaches the servicer.
        with pytest.raises(grpc.aio.AioRpcError) as invalid:
            await stub.StartBot(q.StartBotRequest(bot_id=""))
        assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "bot_id: required" in (invalid.value.details() or "")

    def counted(status: str) -> float | None:
        labels = {"method": "StartBot", "code": status}
        return registry.get_sample_value("t_rpc_latency_seconds_count", labels)

    if code == grpc.StatusCode.INVALID_ARGUMENT:
        assert counted(code.name) == 2
    else:
        assert (counted(code.name), counted("INVALID_ARGUMENT")) == (1, 1)
