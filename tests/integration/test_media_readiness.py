"""A media_svc replica is ready only when every worker process of its pools has its
engine loaded: with the Whisper model missing it never reports SERVING, says why on
/healthz and in its log, and claims none of the pool's jobs (another replica may); with
the real model it reports SERVING only after the model is loaded."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import aiohttp
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.store import JobStatus, StoreConfig, open_store
from services.media_svc.models import DEFAULT_MODELS_DIR, WHISPER_BASE, is_assembled
from tests.helpers.processes import free_port, media_env, start_service
from tests.helpers.store_factories import new_job
from tests.helpers.waiting import eventually

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
PROBE_SECONDS = 0.1


async def _grpc_status(address: str) -> int:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=2)
        return int(reply.status)


async def _healthz(http: aiohttp.ClientSession, port: int) -> tuple[int, dict[str, Any]]:
    async with http.get(f"http://127.0.0.1:{port}/healthz") as response:
        body: dict[str, Any] = await response.json()
        return response.status, body


def _env(tmp_path: Path, models: Path, metrics_port: int) -> dict[str, str]:
    return media_env(
        tmp_path / "store.sqlite3",
        tmp_path / "staging",
        "127.0.0.1:9",  # nothing is delivered in these tests
        MEDIA_POOLS="Audio",
        MEDIA_WARM_POOLS="true",
        MEDIA_MODELS_DIR=str(models),
        MEDIA_SVC_METRICS_PORT=str(metrics_port),
        STORE_PROBE_INTERVAL_SECONDS=str(PROBE_SECONDS),
    )


async def test_a_replica_whose_model_is_missing_never_reports_ready(tmp_path: Path) -> None:
    empty = tmp_path / "models"
    empty.mkdir()
    (tmp_path / "staging").mkdir()
    store = await open_store(StoreConfig(backend="sqlite", sqlite_path=tmp_path / "store.sqlite3"))
    job = new_job(pool="Audio", has_staged_file=False)
    assert await store.create_job(job)
    port = free_port()
    log = tmp_path / "media.log"
    media = await start_service("services.media_svc", _env(tmp_path, empty, port), log)
    try:
        async with aiohttp.ClientSession() as http:

            async def failed() -> dict[str, Any] | None:
                _, body = await _healthz(http, port)
                return body if body["pools"]["Audio"]["state"] == "failed" else None

            body = await eventually(failed, within=60)
            status, body = await _healthz(http, port)
            assert status == 503 and body["status"] == "NOT_SERVING"
            assert "no complete Whisper model" in body["problem"]
            assert str(empty / WHISPER_BASE) in body["pools"]["Audio"]["detail"]
            # A failed load is final: over many store probes the replica stays unready
            # and takes none of the pool's jobs.
            watch_until = time.monotonic() + 20 * PROBE_SECONDS
            while time.monotonic() < watch_until:
                assert await _grpc_status(media.address) == NOT_SERVING
                assert (await _healthz(http, port))[0] == 503
            found = await store.get_job(job.media_processing_id)
            assert found is not None
            assert (found[1].status, found[1].attempts) == (JobStatus.PENDING, 0)
        text = log.read_text()
        assert "pool Audio NOT ready" in text and "no complete Whisper model" in text
    finally:
        await media.stop()
        await store.close()


async def test_a_replica_becomes_ready_only_after_its_model_is_loaded(tmp_path: Path) -> None:
    models = DEFAULT_MODELS_DIR
    assert is_assembled(models / WHISPER_BASE), "run `make models` first"
    (tmp_path / "staging").mkdir()
    port = free_port()
    log = tmp_path / "media.log"
    media = await start_service("services.media_svc", _env(tmp_path, models, port), log)
    try:
        async with aiohttp.ClientSession() as http:
            # The model takes seconds to load in a fresh process: the first answer,
            # right after the gRPC server started, is not ready yet.
            status, body = await _healthz(http, port)
            assert status == 503 and body["pools"]["Audio"]["state"] == "loading"
            assert await _grpc_status(media.address) == NOT_SERVING

            async def serving() -> bool:
                return bool(await _grpc_status(media.address) == SERVING)

            await eventually(serving, within=120)
            status, body = await _healthz(http, port)
            assert status == 200 and body["problem"] is None
            assert body["pools"]["Audio"]["state"] == "ready"
            assert body["pools"]["Audio"]["detail"].startswith("1 processes, engine loaded")
        text = log.read_text()
        assert text.index("pool Audio ready") < text.index("ready: SERVING")
    finally:
        await media.stop()
