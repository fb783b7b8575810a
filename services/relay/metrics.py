"""Prometheus metrics of the relay (own registry)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class RelayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.deliveries = Counter(
            "relay_deliveries",
            "Webhook POST attempts by outcome (delivered, http_<status>, timeout,"
            " connection_error, skipped_no_webhook)",
            ["outcome"],
            registry=self.registry,
        )
        self.replies = Counter(
            "relay_replies",
            "Replies from webhook responses sent through the gateway, by outcome",
            ["outcome"],
            registry=self.registry,
        )
        self.lag_messages = Gauge(
            "relay_lag_messages",
            "Messages of the bot received from queue_svc and not yet delivered",
            ["bot_id"],
            registry=self.registry,
        )
        self.lag_seconds = Gauge(
            "relay_lag_seconds",
            "Age (from originating_time) of the bot's oldest undelivered message; 0 when idle",
            ["bot_id"],
            registry=self.registry,
        )
