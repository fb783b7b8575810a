"""Composition root of the gateway: config → store → queue shards → handlers → HTTP."""

from __future__ import annotations

import asyncio
import logging
import signal

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry, start_http_server

from services.common.media_store import StagedMedia, open_media_store
from services.common.outbound_http import OutboundClient, OutboundPolicy
from services.common.queue_shards import QueueShards
from services.common.store import open_store
from services.gateway.config import GatewayConfig
from services.gateway.frame_handler import FrameHandler
from services.gateway.http_app import GatewayApp
from services.gateway.metrics import GatewayMetrics
from services.gateway.node_client import NodeClient
from services.gateway.node_directory import NodeDirectory
from services.gateway.node_link import NodeLink
from services.gateway.outbox_delivery import OutboxDelivery
from services.gateway.outgoing_media import OutgoingMediaLoader
from services.gateway.queue_writer import QueueWriter
from services.gateway.readiness import Readiness

log = logging.getLogger("gateway")


async def serve(config: GatewayConfig) -> None:
    """Runs until SIGTERM/SIGINT; then stops accepting, flushes and closes everything."""
    registry = CollectorRegistry()
    metrics = GatewayMetrics(registry)
    if config.metrics_port:
        start_http_server(config.metrics_port, addr=config.host, registry=registry)
    store = await open_store(config.store)
    staged_media = StagedMedia(open_media_store(config.media, store), store)
    shards = QueueShards(config.queue_shards)
    writer = QueueWriter(
        shards,
        window_seconds=config.batch_window_seconds,
        max_batch=config.batch_max_messages,
        timeout_seconds=config.rpc_timeout_seconds,
    )
    writer.start()
    link = NodeLink(ack_timeout_seconds=config.outgoing_ack_timeout_seconds)
    delivery = OutboxDelivery(
        store,
        link,
        metrics,
        scan_seconds=config.outbox_scan_seconds,
        result_timeout_seconds=config.outbox_result_timeout_seconds,
    )
    link.on_change = delivery.wake
    link.on_disconnect = delivery.connection_lost
    handler = FrameHandler(
        writer,
        link,
        metrics,
        log_interval_seconds=config.log_summary_seconds,
        on_outgoing_result=delivery.record_result,
    )
    http = aiohttp.ClientSession()
    outbound = OutboundClient(OutboundPolicy.from_env())
    app = GatewayApp(
        config=config,
        store=store,
        queue=shards,
        handler=handler,
        link=link,
        node=NodeClient(http, NodeDirectory(store, config.node_api_url), config.node_api_token),
        metrics=metrics,
        readiness=Readiness(store, shards, config.ready_timeout_seconds),
        delivery=delivery,
        media=OutgoingMediaLoader(
            outbound, config.outgoing_media_max_bytes, config.outgoing_media_timeout_seconds
        ),
        staged_media=staged_media,
    ).build()
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await site.start()
        delivery.start()
        port = runner.addresses[0][1] if runner.addresses else config.port
        print(f"gateway listening on {config.host}:{port}", flush=True)
        await stop.wait()
        log.info("gateway stopping")
    finally:
        await delivery.close()
        await runner.cleanup()
        handler.flush_logs()
        await writer.close()
        await http.close()
        await outbound.close()
        await shards.close()
        await store.close()
