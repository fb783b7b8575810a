"""Prometheus metrics of the relay (own registry)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class RelayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.deliveries = Counter(
            "relay_deliveries",
            "Webhook POST attempts by outcome (delivered, http_error, redirect, timeout,"
            " connection_error, refused_destination, skipped_no_webhook) and status class"
            " (2xx … 5xx, none when no HTTP answer came)",
            ["outcome", "status_class"],
            registry=self.registry,
        )
        self.dead_letters = Counter(
            "relay_dead_letters",
            "Messages given up and kept as webhook dead letters, by the last attempt's outcome",
            ["outcome"],
            registry=self.registry,
        )
        self.failing = Gauge(
            "relay_webhook_failing",
            "1 while the bot's webhook is failing: its last attempt failed, until a delivery"
            " succeeds or its dead letters are all retried or skipped",
            ["bot_id"],
            registry=self.registry,
        )
        self.dead_letters_waiting = Gauge(
            "relay_webhook_dead_letters",
            "Webhook dead letters kept in the store for the bot (refreshed periodically)",
            ["bot_id"],
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
            "Messages of the bot received from queue_svc and not yet handled (delivered or"
            " dead-lettered)",
            ["bot_id"],
            registry=self.registry,
        )
        self.lag_seconds = Gauge(
            "relay_lag_seconds",
            "Age (from originating_time) of the bot's oldest undelivered message; 0 when idle",
            ["bot_id"],
            registry=self.registry,
        )
        self.bots_owned = Gauge(
            "relay_bots_owned",
            "Bots whose lease this relay holds (it alone delivers them)",
            registry=self.registry,
        )
        self.relays_alive = Gauge(
            "relay_members",
            "Relays alive by their membership leases, as this relay saw at its last round",
            registry=self.registry,
        )
