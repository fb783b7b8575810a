"""schemathesis fuzzes every operation of the gateway's published OpenAPI document against
the real gateway (a subprocess, with a real queue_svc and SQLite store, and a stand-in
Node HTTP API holding one session that waits for a scan): no 5xx but the ones an
operation documents (503 is only documented for an unavailable dependency, which is
up here, so none is expected), every answer matches its documented status, content type,
headers and schema, every request the schema refuses is refused (4xx), and a request
answered 4xx leaves every table of the store as it was.

Per operation: schema-valid requests on the seeded bot, schema-invalid ones on the same
bot, and schema-valid ones with generated path parameters; a fixed seed (Hypothesis'
derandomize) and few examples each keep it deterministic and bounded."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
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
        yield Gateway(url, db)
    finally:
        for process in (service, queue):
            assert await process.stop() == 0, f"{process.name} did not stop cleanly"
        await node_runner.cleanup()


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
    counts: dict[int, int],
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
        counts[response.status_code] = counts.get(response.status_code, 0) + 1
        case.validate_response(response, checks=checks, headers=headers)
        if 400 <= response.status_code < 500:
            assert _snapshot(gateway.sqlite_path) == before, (
                f"{case.operation.label} answered {response.status_code} but changed the"
                f" store: {response.text[:300]}"
            )

    run()


def _fuzz_all(gateway: Gateway) -> dict[int, int]:
    schema = schemathesis.openapi.from_url(f"{gateway.url}/openapi.json")
    counts: dict[int, int] = {}
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
    assert not any(status >= 500 and status not in (502, 503) for status in counts), counts
    # The fuzzer reached past the checks: answers that did work, and refusals.
    assert sum(n for s, n in counts.items() if s < 300) > 50, counts
    assert sum(n for s, n in counts.items() if 400 <= s < 500) > 50, counts
