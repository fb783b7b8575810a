"""The composition root of media_svc: config → store → domain objects → gRPC server."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import tempfile
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any

import grpc
from chatbot.media.v1 import media_service_pb2, media_service_pb2_grpc
from grpc_health.v1 import _async as health_aio
from grpc_health.v1 import health, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from services.common.batch_thread import BatchThread
from services.common.grpc_edge import GrpcEdge, RpcMetrics, RpcObserver
from services.common.health import ProbeSettings, StoreHealth
from services.common.media_store import StagedMedia, open_media_store
from services.common.store import open_store
from services.media_svc.cleanup import Cleanup
from services.media_svc.config import MediaConfig
from services.media_svc.definitions import (
    ActivePool,
    BlockingSpec,
    DefinitionsManager,
    LoadedDefinitions,
    PoolDefaults,
)
from services.media_svc.delivery import QueueDelivery
from services.media_svc.execution import PoolExecutors, WarmUpError
from services.media_svc.hooks import ClaimTrace, CrashHook
from services.media_svc.metrics import MediaMetrics
from services.media_svc.operations import MediaOperations
from services.media_svc.pool import PoolSet
from services.media_svc.processors.registry import ProcessorRegistry, default_registry
from services.media_svc.readiness import EngineReadiness
from services.media_svc.servicer import MediaServicer
from services.media_svc.staging import MediaStaging
from services.media_svc.usage_releases import CoalescedReleases
from services.media_svc.worker import JobWorker, WorkerSettings, utc_now

log = logging.getLogger(__name__)

SERVICE_NAME = media_service_pb2.DESCRIPTOR.services_by_name["MediaService"].full_name


def grpc_edge(observe: RpcObserver) -> GrpcEdge:
    """media_svc's gRPC edge; tests serve the servicer behind the same one."""
    return GrpcEdge(observe)


async def _every(
    name: str, interval: float, action: Callable[[], Awaitable[object]], *, first: float = 0.0
) -> None:
    """Runs `action` periodically; an error is logged and the loop goes on."""
    await asyncio.sleep(first)
    while True:
        try:
            await action()
        except Exception:
            log.exception("%s failed; retrying in %.1fs", name, interval)
        await asyncio.sleep(interval)


async def _dispatch_forever(pools: PoolSet) -> None:
    while True:
        try:
            await pools.run()
            return
        except Exception:
            log.exception("claim loop failed; restarting in 1s")
            await asyncio.sleep(1)


def _var_directory() -> Path:
    var = Path("./var")
    var.mkdir(exist_ok=True)
    return var


async def serve(
    config: MediaConfig,
    *,
    registry: ProcessorRegistry | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Runs media_svc until SIGTERM/SIGINT (or `stop` is set), then shuts down gracefully:
    stop claiming, finish running jobs within the grace period, release the rest."""
    stop = stop or asyncio.Event()
    probe_settings = ProbeSettings.from_env(os.environ)
    store = await open_store(config.store)
    scratch = config.scratch_dir or Path(
        tempfile.mkdtemp(prefix="media-scratch-", dir=_var_directory())
    )
    # The per-job deletes (the scratch copy, the staged object) share one batching thread.
    file_calls = BatchThread("media-files")
    releases = CoalescedReleases(store)
    staging = MediaStaging(
        StagedMedia(open_media_store(config.media, store, file_calls.run), releases),
        scratch,
        file_calls.run,
    )
    metrics = MediaMetrics()
    delivery = QueueDelivery(
        config.queue_shards, metrics, rpc_timeout=config.delivery_timeout_seconds
    )
    executor = PoolExecutors()
    trace = ClaimTrace(config.trace_path)
    server = grpc.aio.server(
        interceptors=[grpc_edge(RpcMetrics(metrics.registry, "media_svc").observe)]
    )
    health_servicer = health_aio.HealthServicer()
    background: set[asyncio.Task[object]] = set()

    def spawn(coroutine: Coroutine[Any, Any, object]) -> None:
        task = asyncio.create_task(coroutine)
        background.add(task)
        task.add_done_callback(background.discard)

    def readiness_changed() -> None:
        if pools is not None:
            pools.wake()
        spawn(store_health.check_once())

    readiness = EngineReadiness(readiness_changed)
    store_health = StoreHealth(
        store, health_servicer, (SERVICE_NAME, ""), probe_settings, ready=readiness.problem
    )

    def health_report() -> tuple[bool, Mapping[str, Any]]:
        problem = store_health.problem
        return problem is None, {
            "status": "SERVING" if problem is None else "NOT_SERVING",
            "problem": problem,
            "pools": readiness.describe(),
        }

    tasks: list[asyncio.Task[None]] = []
    pools: PoolSet | None = None
    try:
        if config.metrics_port:
            metrics.serve(config.host, config.metrics_port, health_report)
        definitions = DefinitionsManager(
            store,
            registry or default_registry(),
            PoolDefaults(
                timeout_seconds=config.processor_timeout_seconds,
                max_attempts=config.max_attempts,
                memory_limit_mb=config.worker_memory_limit_mb,
            ),
        )
        await definitions.start()
        worker = JobWorker(
            store=store,
            staging=staging,
            delivery=delivery,
            executor=executor,
            metrics=metrics,
            settings=WorkerSettings(
                worker_id=config.worker_id,
                lease_seconds=config.lease_seconds,
                backoff_base_seconds=config.backoff_base_seconds,
                backoff_max_seconds=config.backoff_max_seconds,
            ),
            crash=CrashHook(config.crash_at),
            trace=trace,
        )
        pools = PoolSet(
            store=store,
            worker=worker,
            metrics=metrics,
            worker_id=config.worker_id,
            lease_seconds=config.lease_seconds,
            poll_fallback_seconds=config.poll_fallback_seconds,
            claimable=readiness.accepts,
        )

        async def warm(pool: ActivePool, generation: int) -> None:
            name = pool.definition.name
            try:
                readiness.loaded(name, generation, await executor.warm(pool))
            except WarmUpError as exc:
                readiness.failed(name, generation, str(exc))
            except Exception as exc:
                log.exception("pool %s: warm-up failed", name)
                readiness.failed(name, generation, f"{type(exc).__name__}: {exc}")

        def apply(loaded: LoadedDefinitions) -> None:
            assert pools is not None
            served = [p for p in loaded.pools if config.serves(p.definition.name)]
            unknown = config.pools - {p.definition.name.lower() for p in loaded.pools}
            if unknown:
                log.warning(
                    "MEDIA_POOLS names pools the definitions do not have: %s", sorted(unknown)
                )
            pools.apply(loaded, served)
            executor.retain(served)
            # Worker processes must load their engines first, unless warming is off
            # (then engines load on a pool's first job and the pool is ready at once).
            loading = [p for p in served if config.warm_pools and isinstance(p.spec, BlockingSpec)]
            generation = readiness.expect(
                ready=[p.definition.name for p in served if p not in loading],
                loading=[p.definition.name for p in loading],
            )
            for pool in loading:
                spawn(warm(pool, generation))
            log.info("this replica serves pools: %s", ", ".join(p.definition.name for p in served))

        apply(definitions.current)
        cleanup = Cleanup(
            store=store,
            staging=staging,
            delivery=delivery,
            metrics=metrics,
            stale_after_seconds=config.stale_after_seconds,
            orphan_grace_seconds=config.orphan_grace_seconds,
        )
        operations = MediaOperations(
            store=store, definitions=definitions, pools=pools, staging=staging
        )

        media_service_pb2_grpc.add_MediaServiceServicer_to_server(MediaServicer(operations), server)
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, reflection.SERVICE_NAME, health.SERVICE_NAME), server
        )
        port = server.add_insecure_port(f"{config.host}:{config.port}")
        await server.start()
        # SERVING once the store takes writes and every served pool's engines are
        # loaded; NOT_SERVING whenever either stops being true.
        await store_health.check_once()
        print(f"media_svc listening on {config.host}:{port}", flush=True)

        async def reload_definitions() -> None:
            if await definitions.reload():
                apply(definitions.current)

        async def refresh_metrics() -> None:
            names = [p.definition.name for p in definitions.current.pools]
            metrics.set_depths(await store.pool_depths(), names, utc_now())

        async def run_cleanup() -> None:
            await cleanup.run_if_leader(config.worker_id, config.cleanup_interval_seconds * 2)

        tasks = [
            asyncio.create_task(_dispatch_forever(pools), name="claim-loop"),
            asyncio.create_task(
                _every("definitions reload", config.definitions_reload_seconds, reload_definitions)
            ),
            asyncio.create_task(
                _every(
                    "redelivery sweep",
                    config.redelivery_interval_seconds,
                    lambda: worker.redeliver_stranded(config.redelivery_after_seconds),
                )
            ),
            asyncio.create_task(_every("cleanup", config.cleanup_interval_seconds, run_cleanup)),
            asyncio.create_task(
                _every("metrics refresh", config.metrics_refresh_seconds, refresh_metrics)
            ),
            asyncio.create_task(store_health.run(), name="store probe"),
        ]
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        stopper = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([stopper, *tasks], return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        for task in done:
            if task is not stopper and not task.cancelled() and task.exception():
                log.error("background task %s died", task.get_name(), exc_info=task.exception())
        log.info("media_svc shutting down")
    finally:
        await health_servicer.enter_graceful_shutdown()
        if pools is not None:
            pools.stop_claiming()
            if tasks:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(
                        asyncio.shield(tasks[0]), config.poll_fallback_seconds + 5
                    )
            await pools.drain(config.shutdown_grace_seconds)
        for running in [*tasks, *background]:
            running.cancel()
        await asyncio.gather(*tasks, *background, return_exceptions=True)
        with contextlib.suppress(Exception):
            await store.release_lease("media_cleanup", config.worker_id)
        await server.stop(grace=1.0)
        await delivery.close()
        executor.close()
        trace.close()
        metrics.close()
        await file_calls.close()
        await releases.close()
        await store.close()
        if config.scratch_dir is None:
            shutil.rmtree(scratch, ignore_errors=True)
        log.info("media_svc stopped")
