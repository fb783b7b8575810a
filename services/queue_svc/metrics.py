"""Prometheus metrics of queue_svc, on a registry of its own (no module-level state).

RPC latency and counts are recorded by the gRPC edge (services.common.grpc_edge) on
this registry, as `queue_svc_rpc_latency_seconds`.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge

from services.queue_svc.service import QueueService


class QueueMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self._persisted = Counter(
            "queue_svc_messages_persisted", "Ready messages written to queues", registry=r
        )
        self._emitted = Counter(
            "queue_svc_messages_emitted", "Ready messages emitted to subscribers", registry=r
        )
        self._drops = Counter(
            "queue_svc_subscriber_drops",
            "Subscribers disconnected because their buffer overflowed",
            registry=r,
        )
        self._learned = Counter(
            "queue_svc_identities_learned",
            "LID <-> phone JID pairs recorded in the identity map",
            registry=r,
        )
        self._merged = Counter(
            "queue_svc_correspondents_merged",
            "Phone-JID correspondents merged into their LID (one identity event each)",
            registry=r,
        )
        self._counted = Gauge(
            "queue_svc_queue_messages", "Counted messages in windows", ["bot_id"], registry=r
        )
        self._placeholders = Gauge(
            "queue_svc_placeholders_waiting", "Placeholders awaiting media", ["bot_id"], registry=r
        )
        self._placeholder_age = Gauge(
            "queue_svc_oldest_placeholder_age_seconds",
            "Age of the oldest waiting placeholder",
            ["bot_id"],
            registry=r,
        )
        self._backlog = Gauge(
            "queue_svc_persistence_backlog",
            "Ready messages not yet persisted",
            ["bot_id"],
            registry=r,
        )
        self._labelled: set[str] = set()
        self._subscribers = Gauge("queue_svc_subscribers", "Live subscribers", registry=r)

    # IngestionMetrics / ServiceMetrics
    def persisted(self, count: int) -> None:
        self._persisted.inc(count)

    def emitted(self, count: int) -> None:
        self._emitted.inc(count)

    def subscriber_dropped(self) -> None:
        self._drops.inc()

    def identities_learned(self, count: int) -> None:
        self._learned.inc(count)

    def correspondents_merged(self, count: int) -> None:
        self._merged.inc(count)

    def sample(self, service: QueueService) -> None:
        """Refreshes the gauges from the event loop (the scrape thread never reads state)."""
        now = time.monotonic()
        seen: set[str] = set()
        for bot_id, queues in service.bot_snapshots():
            seen.add(bot_id)
            self._counted.labels(bot_id).set(queues.counted_count())
            self._placeholders.labels(bot_id).set(queues.placeholder_count())
            oldest = queues.oldest_placeholder_placed_at()
            self._placeholder_age.labels(bot_id).set(0.0 if oldest is None else now - oldest)
            self._backlog.labels(bot_id).set(queues.backlog_size)
        for gone in self._labelled - seen:  # stopped bots
            for gauge in (self._counted, self._placeholders, self._placeholder_age, self._backlog):
                gauge.remove(gone)
        self._labelled = seen
        self._subscribers.set(service.subscriber_count)
