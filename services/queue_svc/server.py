"""The composition root: config → store → service → servicer → gRPC server."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal

import grpc
from chatbot.queue.v1 import queue_service_pb2, queue_service_pb2_grpc
from grpc_health.v1 import _async as health_aio  # health.aio re-exports it untyped
from grpc_health.v1 import health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import start_http_server

from services.common.grpc_edge import GrpcEdge, RpcMetrics, RpcObserver
from services.common.health import ProbeSettings, StoreHealth
from services.common.store import open_store
from services.queue_svc.config import Config
from services.queue_svc.metrics import QueueMetrics
from services.queue_svc.service import QueueService
from services.queue_svc.servicer import QueueServicer
from services.queue_svc.subscriptions import SubscriberOverflowError

log = logging.getLogger("queue_svc.server")

SERVICE_NAME = queue_service_pb2.DESCRIPTOR.services_by_name["QueueService"].full_name
METRICS_SAMPLE_SECONDS = 5.0


async def _sample(metrics: QueueMetrics, service: QueueService) -> None:
    while True:
        metrics.sample(service)
        await asyncio.sleep(METRICS_SAMPLE_SECONDS)


def grpc_edge(observe: RpcObserver) -> GrpcEdge:
    """queue_svc's gRPC edge; tests serve the servicer behind the same one."""
    return GrpcEdge(observe, {SubscriberOverflowError: grpc.StatusCode.RESOURCE_EXHAUSTED})


async def serve(config: Config) -> None:
    """Runs until SIGTERM/SIGINT, then: NOT_SERVING, stop accepting, drain, close."""
    probe_settings = ProbeSettings.from_env(os.environ)
    store = await open_store(config.store)
    metrics = QueueMetrics()
    service = QueueService(store, config.service, metrics)
    edge = grpc_edge(RpcMetrics(metrics.registry, "queue_svc").observe)
    server = grpc.aio.server(interceptors=[edge])
    health = health_aio.HealthServicer()
    store_health = StoreHealth(store, health, ("", SERVICE_NAME), probe_settings)
    queue_service_pb2_grpc.add_QueueServiceServicer_to_server(QueueServicer(service), server)
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    reflection.enable_server_reflection((SERVICE_NAME, reflection.SERVICE_NAME), server)
    port = server.add_insecure_port(f"{config.host}:{config.port}")
    http = None
    sampler: asyncio.Task[None] | None = None
    prober: asyncio.Task[None] | None = None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        if config.metrics_port:
            http, _thread = start_http_server(
                config.metrics_port, config.host, registry=metrics.registry
            )
        resumed = await service.start()
        await server.start()
        # SERVING only once the store takes writes, and NOT_SERVING whenever it stops.
        await store_health.check_once()
        prober = asyncio.create_task(store_health.run())
        sampler = asyncio.create_task(_sample(metrics, service))
        log.info(
            "serving",
            extra={"port": port, "shard": str(config.service.shard), "resumed_bots": resumed},
        )
        # Machine-readable: tests and scripts started with QUEUE_SVC_PORT=0 read the port.
        # Printed last, so whoever waits for it finds the "serving" log line written.
        print(f"queue_svc listening on {config.host}:{port}", flush=True)
        await stop.wait()
        log.info("shutting down")
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await health.enter_graceful_shutdown()
        service.close_subscriptions()
        stopping_at = loop.time()
        await server.stop(config.shutdown_grace_seconds)
        # Each step of the stop says when it ended, so a slow stop shows where it waited.
        log.info("gRPC calls ended", extra={"seconds": round(loop.time() - stopping_at, 3)})
        for task in (sampler, prober):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        try:
            drained = await service.shutdown()
            log.info(
                "ingestion drained",
                extra={
                    "messages_persisted": drained,
                    "seconds": round(loop.time() - stopping_at, 3),
                },
            )
        finally:
            await store.close()
            if http is not None:
                http.shutdown()
