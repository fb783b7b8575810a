"""Gateway metrics, registered on a registry owned by the composition root."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chatbot.wire.v1 import frames_pb2 as w
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        # The labelled children of the per-frame series, by label value: `labels()` takes
        # a lock and builds a key on every call, three times per frame. The label values
        # are bounded (payload kinds, ack statuses).
        self._children: dict[tuple[str, object], Any] = {}
        self.frames_received = Counter(
            "gateway_frames_received_total",
            "Frames received from Node, by payload kind.",
            ["kind"],
            registry=registry,
        )
        self.frames_acked = Counter(
            "gateway_frames_acked_total",
            "Acknowledgements sent to Node, by status.",
            ["status"],
            registry=registry,
        )
        self.frames_rejected = Counter(
            "gateway_frames_rejected_total",
            "Frames refused as invalid, by reason class (malformed or invalid).",
            ["reason"],
            registry=registry,
        )
        self.node_connections = Gauge(
            "gateway_node_connections", "Open WebSocket connections from Node.", registry=registry
        )
        self.frame_latency = Histogram(
            "gateway_frame_seconds",
            "Time from receiving a frame to sending its acknowledgement.",
            ["kind"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0),
            registry=registry,
        )
        self.outgoing = Counter(
            "gateway_outgoing_total",
            "Outgoing messages by step: accepted, repeated (same key), conflict (same key,"
            " another body), streamed (to Node), sent, failed, retry (Node asked to wait).",
            ["step"],
            registry=registry,
        )

    def frame_received(self, kind: str) -> None:
        child = self._children.get(("received", kind))
        if child is None:
            child = self._child("received", kind, lambda: self.frames_received.labels(kind))
        child.inc()

    def frame_acked(self, status: w.AckStatus.ValueType, count: int = 1) -> None:
        self._child(
            "acked", status, lambda: self.frames_acked.labels(w.AckStatus.Name(status))
        ).inc(count)

    def frame_answered(self, kind: str, seconds: float) -> None:
        # Looked up before a closure is made: twice per frame.
        child = self._children.get(("latency", kind))
        if child is None:
            child = self._child("latency", kind, lambda: self.frame_latency.labels(kind))
        child.observe(seconds)

    def _child(self, series: str, value: object, make: Callable[[], Any]) -> Any:
        key = (series, value)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = make()
        return child
