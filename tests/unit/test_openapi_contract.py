"""The published OpenAPI document against the application the gateway builds: every route
of the router is in the document or on api_docs.EXCLUDED (and every exclusion names a
served route), every handler that reads a body reads it with the model its route
declares (and no handler reads one any other way), and the document is valid OpenAPI 3.1
whose schemas are valid JSON Schema 2020-12 (both checked
by schemathesis' validators). A route added without `@endpoint` fails
here. The schemathesis test (tests/integration/test_openapi_fuzz.py) checks the answers."""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator
from typing import Any, cast

import aiohttp
import jsonschema_rs
import pytest
import schemathesis
from aiohttp import web
from pydantic import BaseModel

from services.gateway import api_models
from services.gateway.api_docs import EXCLUDED, ApiDocs
from services.gateway.config import GatewayConfig
from services.gateway.http_app import GatewayApp
from services.gateway.openapi import (
    Binary,
    Security,
    endpoint,
    endpoint_of,
    is_excluded,
    read_body,
    route_path,
)

METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH")


def _app() -> web.Application:
    """The application as the gateway builds it; its collaborators are never called
    while the routes are only listed."""
    config = GatewayConfig(node_ws_token="n", api_token="a")
    names = inspect.signature(GatewayApp.__init__).parameters
    parts: dict[str, Any] = {n: cast(Any, None) for n in names if n not in ("self", "config")}
    return GatewayApp(config=config, **parts).build()


def _routes(app: web.Application) -> Iterator[tuple[str, str, web.AbstractRoute]]:
    for route in app.router.routes():
        path = route_path(route)
        if route.method in METHODS and path is not None:
            yield route.method, path, route


@pytest.fixture(scope="module")
def app() -> web.Application:
    return _app()


@pytest.fixture(scope="module")
def document(app: web.Application) -> dict[str, Any]:
    return ApiDocs().build(app)


def test_every_route_is_documented_or_excluded_on_purpose(
    app: web.Application, document: dict[str, Any]
) -> None:
    served = {(method, path) for method, path, _ in _routes(app)}
    documented = {
        (method.upper(), path)
        for path, operations in document["paths"].items()
        for method in operations
    }
    undocumented = {(m, p) for m, p in served - documented if not is_excluded(p, EXCLUDED)}
    assert not undocumented, f"routes with no @endpoint and not in EXCLUDED: {undocumented}"
    assert documented <= served
    stale = {key for key in EXCLUDED if not any(is_excluded(p, {key: ""}) for _, p in served)}
    assert not stale, f"EXCLUDED names routes the gateway does not serve: {stale}"
    assert not any(is_excluded(path, EXCLUDED) for _, path in documented)


def test_a_route_without_a_description_fails_the_build() -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response({})

    app = _app()
    app.router.add_get("/bots/{bot_id}/undescribed", handler)
    with pytest.raises(ValueError, match="undescribed has no @endpoint"):
        ApiDocs().build(app)


def _reads(source: str) -> set[str]:
    """The models a handler's source passes to read_body."""
    return set(re.findall(r"read_body\(request, m\.(\w+)\)", source))


def test_handlers_read_their_body_with_the_declared_model_only(app: web.Application) -> None:
    checked = 0
    for method, path, route in _routes(app):
        described = endpoint_of(route.handler)
        if described is None:
            continue
        source = inspect.getsource(route.handler)
        # The body is read through read_body only: nothing parses it past the model.
        for direct in ("request.json(", "request.read(", "request.text(", "request.post("):
            assert direct not in source, (method, path, direct)
        if isinstance(described.request, Binary):
            # A streamed body (media bytes) is read chunk by chunk, never through a model.
            assert "request.content" in source or "_body(request)" in source, (method, path)
            assert not _reads(source), (method, path)
            continue
        expected = set() if described.request is None else {described.request.__name__}
        assert _reads(source) == expected, (method, path)
        checked += described.request is not None
    assert checked >= 9


async def test_read_body_refuses_a_model_other_than_the_declared_one() -> None:
    @endpoint(
        summary="s",
        tags=("t",),
        security=Security.NONE,
        request=api_models.TokenBody,
        responses={200: api_models.TokenRevoked},
    )
    async def drifted(request: web.Request) -> web.Response:
        await read_body(request, api_models.StartBody)
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/drifted", drifted)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        host, port = runner.addresses[0][:2]
        async with (
            aiohttp.ClientSession() as http,
            http.post(f"http://{host}:{port}/drifted", json={"label": "x"}) as response,
        ):
            assert response.status == 500
    finally:
        await runner.cleanup()


def _refs(node: object) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def test_the_document_is_openapi_3_1_with_valid_json_schemas(document: dict[str, Any]) -> None:
    assert document["openapi"].startswith("3.1.")
    # Against the OpenAPI 3.1 meta-schema (schemathesis bundles it).
    schemathesis.openapi.from_dict(document).validate()
    for name, schema in document["components"]["schemas"].items():
        jsonschema_rs.meta.validate({"$schema": document["jsonSchemaDialect"], **schema})
        assert "$defs" not in schema, name
    names = {f"#/components/schemas/{name}" for name in document["components"]["schemas"]}
    assert set(_refs(document)) <= names
    ids = [
        op["operationId"] for operations in document["paths"].values() for op in operations.values()
    ]
    assert len(ids) == len(set(ids))


def test_errors_share_one_model_and_security_is_declared(document: dict[str, Any]) -> None:
    for path, operations in document["paths"].items():
        for method, op in operations.items():
            for status, answer in op["responses"].items():
                if int(status) in (400, 401, 403, 404, 409):
                    schema = answer["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (path, status)
            schemes = {s for alternative in op["security"] for s in alternative}
            if path.startswith("/internal/"):
                assert schemes == {"nodeToken"}, (method, path)
            elif path.startswith("/bots/"):
                assert schemes and "nodeToken" not in schemes, (method, path)
                assert {"401", "403"} <= set(op["responses"]), (method, path)


def test_every_request_model_refuses_unknown_fields_but_the_configuration() -> None:
    # The configuration keeps keys it does not know (Node and the pools read some); every
    # other body names its fields, so a typo is a 400 rather than a silent default.
    for model in vars(api_models).values():
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            continue
        if model.__name__.endswith("Body") and model is not api_models.BotConfigBody:
            assert model.model_config.get("extra") == "forbid", model.__name__


def test_a_description_must_name_the_route_s_path_parameters() -> None:
    @endpoint(summary="s", tags=("t",), security=Security.NONE, responses={})
    async def handler(request: web.Request) -> web.Response:
        return web.json_response({})

    app = _app()
    app.router.add_get("/bots/{bot_id}/extra", handler)
    with pytest.raises(ValueError, match="path parameters"):
        ApiDocs().build(app)


async def test_the_document_and_the_docs_are_served_without_a_token() -> None:
    runner = web.AppRunner(_app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    base = f"http://{host}:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/openapi.json") as response:
                assert response.status == 200
                assert (await response.json())["openapi"].startswith("3.1.")
            async with http.get(f"{base}/docs") as response:
                assert response.status == 200
                page = await response.text()
            # Every file the page loads is served from here (no CDN).
            for src in re.findall(r'(?:src|href)="([^"]+)"', page):
                assert src.startswith("/docs/"), src
                async with http.get(base + src) as response:
                    assert response.status == 200, src
            for outside in ("/docs/..%2Fapi_docs.py", "/docs/LICENSE", "/docs/.hidden.js"):
                async with http.get(base + outside) as response:
                    assert response.status == 404, outside
            # The API itself still needs its token.
            async with http.get(f"{base}/bots/x") as response:
                assert response.status == 401
    finally:
        await runner.cleanup()


def test_an_excluded_prefix_covers_every_path_under_it_only() -> None:
    excluded = {"/console/*": "HTML pages"}
    assert is_excluded("/console/bots/{bot_id}", excluded)
    assert is_excluded("/console/", excluded)
    assert not is_excluded("/console", excluded)
    assert not is_excluded("/consoles/x", excluded)
    assert is_excluded("/ws", {"/ws": "the WebSocket"})
