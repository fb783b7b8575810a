"""The composition root: config → store → relay, plus /metrics and /healthz."""

from __future__ import annotations

import asyncio
import logging
import signal

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from services.common.outbound_http import OutboundClient
from services.common.store import open_store
from services.relay.config import RelayConfig
from services.relay.metrics import RelayMetrics
from services.relay.relay import Relay
from services.relay.webhook_post import WebhookPoster

log = logging.getLogger("relay.server")


def _app(relay: Relay, metrics: RelayMetrics) -> web.Application:
    async def health(_: web.Request) -> web.Response:
        shards = relay.config.queue_shards.addresses
        connected = [a for a in shards if a in relay.connected]
        return web.json_response(
            {
                "status": "ok" if len(connected) == len(shards) else "degraded",
                "connected_shards": connected,
                "bots": sorted(relay.workers),
                "instance_id": relay.config.instance_id,
                "relays_alive": relay.ownership.members,
            }
        )

    async def scrape(_: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(metrics.registry),
            headers={"Content-Type": CONTENT_TYPE_LATEST},
        )

    app = web.Application()
    app.router.add_get("/healthz", health)
    app.router.add_get("/metrics", scrape)
    return app


async def serve(config: RelayConfig) -> None:
    """Runs until SIGTERM/SIGINT. Nothing needs draining: an unfinished delivery is
    simply made again after the next start (its cursor has not moved)."""
    store = await open_store(config.store)
    metrics = RelayMetrics()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with (
            aiohttp.ClientSession() as http,
            OutboundClient(config.outbound) as outbound,
        ):
            poster = WebhookPoster(
                outbound,
                timeout_seconds=config.timeout_seconds,
                max_response_bytes=config.max_response_bytes,
            )
            relay = Relay(config, store, http, poster, metrics)
            runner = web.AppRunner(_app(relay, metrics), access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, config.host, config.port)
            await site.start()
            port = runner.addresses[0][1]
            try:
                await relay.start()
                # Machine-readable: tests started with RELAY_PORT=0 read the port.
                print(f"relay listening on {config.host}:{port}", flush=True)
                log.info(
                    "relaying",
                    extra={
                        "consumer": config.consumer_name,
                        "instance": config.instance_id,
                        "shards": list(config.queue_shards.addresses),
                    },
                )
                await stop.wait()
                log.info("shutting down")
            finally:
                await relay.stop()
                await runner.cleanup()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await store.close()
