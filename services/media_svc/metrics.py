"""Prometheus metrics of one media_svc replica, on their own registry (no globals)."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

from services.common.store import PoolDepth

log = logging.getLogger(__name__)

# (ready, details): what /healthz answers, 200 when ready, else 503.
HealthReport = Callable[[], tuple[bool, Mapping[str, Any]]]
StartResponse = Callable[[str, list[tuple[str, str]]], object]

_LATENCY_BUCKETS = (0.005, 0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
_PICKUP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1, 5, 30, 300)


class MediaMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.pool_depth = Gauge(
            "media_pool_depth",
            "Pending jobs per pool (store-wide).",
            ["pool"],
            registry=self.registry,
        )
        self.pool_processing = Gauge(
            "media_pool_processing",
            "Jobs being processed per pool (store-wide).",
            ["pool"],
            registry=self.registry,
        )
        self.oldest_pending_age = Gauge(
            "media_oldest_pending_age_seconds",
            "Age of the oldest pending job per pool.",
            ["pool"],
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "media_in_flight",
            "Worker slots in use on this replica, per pool: from the claim to the end of the"
            " job's one delivery attempt (processing, persisting and delivering).",
            ["pool"],
            registry=self.registry,
        )
        self.jobs = Counter(
            "media_jobs",
            "Finished jobs by pool and outcome (delivered, failed, held, deferred, lease_lost,"
            " undelivered, retried).",
            ["pool", "outcome"],
            registry=self.registry,
        )
        self.leases_lost = Counter(
            "media_leases_lost",
            "Claims whose lease was lost (renewal refused, or the fence refused the result):"
            " the run was stopped and its result discarded, per pool.",
            ["pool"],
            registry=self.registry,
        )
        self.processing_seconds = Histogram(
            "media_processing_seconds",
            "Processor run time per pool.",
            ["pool"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.pickup_seconds = Histogram(
            "media_pickup_seconds",
            "Time from job creation to its first claim.",
            ["pool"],
            buckets=_PICKUP_BUCKETS,
            registry=self.registry,
        )
        self.retries = Counter(
            "media_retries",
            "Transient failures retried with backoff, per pool.",
            ["pool"],
            registry=self.registry,
        )
        self.delivery_retries = Counter(
            "media_delivery_retries",
            "UpdateByMediaId attempts that found the bot's queue_svc shard unreachable (the"
            " result waits for the redelivery loop).",
            registry=self.registry,
        )
        self.cleanup_actions = Counter(
            "media_cleanup_actions",
            "Cleanup actions: stale_failed, stale_resolved, stale_timed_out, stale_held,"
            " orphan_deleted, partial_deleted.",
            ["action"],
            registry=self.registry,
        )
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def set_depths(self, depths: Mapping[str, PoolDepth], pools: list[str], now: datetime) -> None:
        for pool in {*pools, *depths}:
            depth = depths.get(pool, PoolDepth(0, 0, None))
            self.pool_depth.labels(pool).set(depth.pending)
            self.pool_processing.labels(pool).set(depth.processing)
            oldest = depth.oldest_pending_created_at
            age = (now - oldest).total_seconds() if oldest is not None else 0.0
            self.oldest_pending_age.labels(pool).set(max(0.0, age))

    def serve(self, host: str, port: int, health: HealthReport | None = None) -> int:
        """Starts the HTTP exporter (`/metrics`, and `/healthz` when `health` is given);
        returns the bound port (0 = OS-chosen)."""
        metrics_app = make_wsgi_app(self.registry)

        def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
            if health is None or environ.get("PATH_INFO") != "/healthz":
                served: Iterable[bytes] = metrics_app(environ, start_response)
                return served
            ready, details = health()
            body = json.dumps(details, sort_keys=True).encode()
            status = "200 OK" if ready else "503 Service Unavailable"
            start_response(status, [("Content-Type", "application/json")])
            return [body]

        self._server = make_server(host, port, app, ThreadingWSGIServer, _QuietHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        bound = int(self._server.server_address[1])
        log.info("media_svc metrics on http://%s:%d/metrics (and /healthz)", host, bound)
        return bound

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class _QuietHandler(WSGIRequestHandler):
    """Probes every few seconds: no access log line for each."""

    def log_message(self, format: str, *args: Any) -> None:
        return
