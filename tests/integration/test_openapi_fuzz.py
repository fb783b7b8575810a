"""schemathesis fuzzes every operation of the gateway's published OpenAPI document against
the real gateway (a subprocess, with a real queue_svc and SQLite store, and a stand-in
Node HTTP API holding one session that waits for a scan): no 5xx at all (502 and 503 are
documented where a dependency can fail, and every dependency is up here), every answer
matches its documented status, content type, headers and schema, every request the
schema refuses is refused (4xx), and a request answered 4xx leaves every table of the
store as it was.

Per operation: schema-valid requests on the seeded bot, schema-invalid ones on the same
bot, and schema-valid ones with generated path parameters; a fixed seed (Hypothesis'
derandomize) and few examples each keep it deterministic and bounded."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from services.common.health import PROBE_LEASE
from services.common.store import StoreConfig, WebhookDeadLetter, open_store
from tests.helpers.node_api import fake_node_api
from tests.helpers.processes import gateway_env, queue_env, start_service

API_TOKEN = "fuzz-operator-token"
NODE_WS_TOKEN = "fuzz-node-ws-token"
NODE_API_TOKEN = "fuzz-node-api-token"
BOT = "fuzz-bot"
# (mode, path parameters fixed to the seeded bot, examples per operation)
RUNS = (
    (GenerationMode.POSITIVE, True, 10),
    (GenerationMode.NEGATIVE, True, 10),
    (GenerationMode.POSITIVE, False, 4),
)
# Operations whose success needs a value the fuzzer cannot guess: a token id or an
# idempotency key that exists (random ones are 404), a webhook to retry to, a failed
# media job's id (tests/integration/test_console.py requeues and deletes one).
NOT_REACHED = {
    "DELETE /bots/{bot_id}/tokens/{token_id}",
    "GET /bots/{bot_id}/messages/{key}",
    "POST /bots/{bot_id}/webhook/dead-letters/{sequence}/retry",
    "DELETE /media/failed-jobs/{media_processing_id}",
    "POST /media/failed-jobs/{media_processing_id}/requeue",
}
# No input to refuse: no body or parameter, and stopping a bot that is not running is
# an answer (nothing stopped), not an error.
NOTHING_TO_REFUSE = {"GET /healthz", "GET /readyz", "POST /bots/{bot_id}/stop"}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@dataclass
class Gateway:
    url: str
    sqlite_path: Path


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    db = tmp_path / "store.sqlite3"
    node_runner, node_url = await fake_node_api([], NODE_API_TOKEN, {BOT: "2@fuzz-qr"})
    queue = await start_service("services.queue_svc", queue_env(db), tmp_path / "queue.log")
    service = await start_service(
        "services.gateway",
        gateway_env(
            db,
            queue.address,
            node_url,
            node_ws_token=NODE_WS_TOKEN,
            api_token=API_TOKEN,
            node_api_token=NODE_API_TOKEN,
        ),
        tmp_path / "gateway.log",
    )
    try:
        url = f"http://{service.address}"
        headers = {"Authorization": f"Bearer {API_TOKEN}"}
        async with (
            aiohttp.ClientSession(headers=headers) as http,
            http.put(f"{url}/bots/{BOT}/config", json={"max_messages": 50}) as response,
        ):
            assert response.status == 200, await response.text()
        store = await open_store(StoreConfig(backend="sqlite", sqlite_path=db))
        try:
            # Dead letters to list, skip and retry (the bot has no webhook: a retry is
            # refused, and must change nothing).
            for sequence in (1, 2, 3):
                assert await store.put_webhook_dead_letter(_dead_letter(sequence))
        finally:
            await store.close()
        yield Gateway(url, db)
    finally:
        for process in (service, queue):
            assert await process.stop() == 0, f"{process.name} did not stop cleanly"
        await node_runner.cleanup()


def _dead_letter(sequence: int) -> WebhookDeadLetter:
    now = datetime.now(UTC)
    return WebhookDeadLetter(
        bot_id=BOT,
        sequence=sequence,
        correspondent_id="4915100000001@s.whatsapp.net",
        body=json.dumps({"sequence": sequence, "message": {"content": "hi"}}),
        attempts=3,
        outcome="http_410",
        status=410,
        reason="HTTP 410: gone",
        first_attempt_at=now - timedelta(seconds=30),
        last_attempt_at=now - timedelta(seconds=1),
        dead_lettered_at=now,
    )


def _snapshot(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table (a read-only connection, so nothing is written) but the
    readiness probe's lease, which the services renew on their own clock."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        names = "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
        tables = [row[0] for row in conn.execute(names)]
        return {
            table: sorted(
                (
                    tuple(row)
                    for row in conn.execute(f'SELECT * FROM "{table}"')
                    if not (table == "leases" and row[0] == PROBE_LEASE)
                ),
                key=repr,
            )
            for table in tables
        }


def _headers(path: str) -> dict[str, str]:
    token = NODE_WS_TOKEN if path.startswith("/internal/") else API_TOKEN
    return {"Authorization": f"Bearer {token}"}


def _fuzz_operation(
    gateway: Gateway,
    session: requests.Session,
    strategy: st.SearchStrategy[Case[Any]],
    examples: int,
    checks: list[Callable[..., Any]],
    counts: dict[tuple[str, int], int],
) -> None:
    @settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def run(case: Case[Any]) -> None:
        headers = _headers(case.operation.path)
        before = _snapshot(gateway.sqlite_path)
        response = case.call(base_url=gateway.url, session=session, headers=headers, timeout=20)
        seen = (case.operation.label, response.status_code)
        counts[seen] = counts.get(seen, 0) + 1
        case.validate_response(response, checks=checks, headers=headers)
        if 400 <= response.status_code < 500:
            assert _snapshot(gateway.sqlite_path) == before, (
                f"{case.operation.label} answered {response.status_code} but changed the"
                f" store: {response.text[:300]}"
            )

    run()


def _fuzz_all(gateway: Gateway) -> dict[tuple[str, int], int]:
    schema = schemathesis.openapi.from_url(f"{gateway.url}/openapi.json")
    counts: dict[tuple[str, int], int] = {}
    operations = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result
        operations.append(result.ok())
    assert len(operations) >= 24
    with requests.Session() as session:
        for operation in operations:
            names = [p.name for p in operation.path_parameters]
            for mode, fixed, examples in RUNS:
                path = {"bot_id": BOT} if fixed and "bot_id" in names else None
                if mode is GenerationMode.NEGATIVE and not (
                    operation.body or operation.query or operation.headers or path
                ):
                    continue
                checks = (
                    [*CHECKS, negative_data_rejection]
                    if mode is GenerationMode.NEGATIVE
                    else CHECKS
                )
                strategy = operation.as_strategy(generation_mode=mode, path_parameters=path)
                _fuzz_operation(gateway, session, strategy, examples, checks, counts)
    return counts


# About 600 requests: 40 s on an idle 2-core machine, several times that under load.
@pytest.mark.timeout(400)
async def test_every_operation_answers_as_documented_and_refusals_change_nothing(
    gateway: Gateway,
) -> None:
    counts = await asyncio.to_thread(_fuzz_all, gateway)
    for (label, status), n in sorted(counts.items()):
        print(f"{label}: {status} x{n}")
    assert not any(status >= 500 for _, status in counts), counts
    # The fuzzer reached past the checks: every operation did work at least once (but
    # those it cannot reach), and every one that takes input refused some.
    labels = {label for label, _ in counts}
    worked = {label for label, status in counts if status < 300}
    refused = {label for label, status in counts if 400 <= status < 500}
    assert worked == labels - NOT_REACHED, sorted(labels - NOT_REACHED - worked)
    assert refused >= labels - NOTHING_TO_REFUSE, sorted(labels - refused)
