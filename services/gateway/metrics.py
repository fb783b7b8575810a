"""Gateway metrics, registered on a registry owned by the composition root."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
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
