"""The HTTP API's published contract: each handler carries an `Endpoint` (declared with
`@endpoint(...)` next to it: summary, tags, who may call it, its parameters, its request
model and its response models per status), and `openapi_document` builds the OpenAPI 3.1
document from the application's router. Method and path come from the router itself, so
the document cannot name a route the gateway does not serve; a route without an
`Endpoint` must be on the caller's exclusion list or the build fails.

Handlers read their body with `read_body(request, Model)`, which refuses a model other
than the one the route declares: what the document says a route accepts is what it
parses (pydantic's JSON Schema is draft 2020-12, the dialect OpenAPI 3.1 uses)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from services.common.errors import InvalidInputError

_ENDPOINT = "_gateway_openapi_endpoint"
_H = TypeVar("_H", bound=Callable[..., Awaitable[web.StreamResponse]])
_M = TypeVar("_M", bound=BaseModel)
# The JSON Schema dialect of OpenAPI 3.1 documents.
_REF_PREFIX = "#/components/schemas/"


class ErrorBody(BaseModel):
    """Every refusal of the API (4xx and 5xx): one human-readable sentence."""

    model_config = ConfigDict(extra="forbid")
    error: str = Field(description="What was wrong and, where it helps, what to do instead.")


class Security(StrEnum):
    """Who may call a route (api_auth.py and http_app.py enforce it)."""

    #: No credential (health probes, this document).
    NONE = "none"
    #: Only the operator token (GATEWAY_API_TOKEN).
    OPERATOR = "operator"
    #: The operator token, or a per-bot token of the route's `{bot_id}`.
    BOT = "bot"
    #: Only the Node servers' credential (GATEWAY_TOKEN).
    NODE = "node"


# The errors each kind of caller check can answer, before the handler runs.
_AUTH_ERRORS: Mapping[Security, tuple[int, ...]] = {
    Security.NONE: (),
    Security.OPERATOR: (401, 403),
    Security.BOT: (401, 403),
    Security.NODE: (401,),
}
_SCHEMES: Mapping[Security, tuple[str, ...]] = {
    Security.NONE: (),
    Security.OPERATOR: ("operatorToken",),
    Security.BOT: ("operatorToken", "botToken"),
    Security.NODE: ("nodeToken",),
}
_SECURITY_SCHEMES = {
    "operatorToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "The operator token (GATEWAY_API_TOKEN): every bot, every route.",
    },
    "botToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "A per-bot token `bot.<id>.<secret>` (POST /bots/{bot_id}/tokens):"
        " its own bot's routes that are not operator-only.",
    },
    "nodeToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "The Node servers' credential (GATEWAY_TOKEN): /internal/* only.",
    },
}
_STATUS_TEXT = {
    200: "OK",
    201: "Created",
    202: "Accepted",
    400: "Bad input: nothing was changed",
    401: "Missing or wrong credential",
    403: "The credential may not call this route (another bot's, or operator-only)",
    404: "Not found",
    409: "Conflict with the current state",
    502: "An upstream (Node server, webhook) refused or failed",
    503: "A dependency is unavailable: retry later",
}


@dataclass(frozen=True)
class Param:
    """A path, query or header parameter; `schema` is its JSON Schema."""

    name: str
    description: str
    schema: Mapping[str, Any] = field(default_factory=lambda: {"type": "string"})
    required: bool = True


#: The `{bot_id}` path parameter most routes share (the store's bound on a bot id).
BOT_ID = Param("bot_id", "The bot's id.", {"type": "string", "minLength": 1, "maxLength": 128})


@dataclass(frozen=True)
class Binary:
    """A body that is not JSON (an image answered, media bytes streamed in)."""

    media_type: str
    description: str


@dataclass(frozen=True)
class Endpoint:
    summary: str
    tags: tuple[str, ...]
    security: Security
    #: Success (and other non-error) statuses → the body's model.
    responses: Mapping[int, type[BaseModel] | Binary]
    #: Error statuses the handler answers itself, all with ErrorBody (the caller checks'
    #: 401/403 are added from `security`).
    errors: tuple[int, ...] = ()
    request: type[BaseModel] | Binary | None = None
    #: False: an absent body reads as the model's defaults.
    request_required: bool = True
    path: tuple[Param, ...] = ()
    query: tuple[Param, ...] = ()
    headers: tuple[Param, ...] = ()
    description: str = ""
    #: Responses carrying a Location header (the status URL).
    location: tuple[int, ...] = ()


def endpoint(**fields: Any) -> Callable[[_H], _H]:
    """Attaches an `Endpoint(**fields)` to the handler it decorates."""
    described = Endpoint(**fields)

    def attach(handler: _H) -> _H:
        setattr(handler, _ENDPOINT, described)
        return handler

    return attach


def endpoint_of(handler: object) -> Endpoint | None:
    found = getattr(handler, _ENDPOINT, None)
    return found if isinstance(found, Endpoint) else None


def _problems(error: ValidationError) -> str:
    parts = []
    for problem in error.errors(include_url=False):
        where = ".".join(str(p) for p in problem["loc"]) or "body"
        parts.append(f"{where}: {problem['msg']}")
    return "; ".join(parts)


async def read_body(request: web.Request, model: type[_M]) -> _M:
    """The body parsed by `model`, which must be the route's declared request model;
    InvalidInputError (the caller's 400) naming every problem otherwise."""
    declared = endpoint_of(request.match_info.handler)
    if declared is None or declared.request is not model:
        raise RuntimeError(
            f"{request.method} {request.path}: the handler reads {model.__name__}, the route"
            f" declares {getattr(declared, 'request', None)}"
        )
    raw = await request.read()
    if not raw.strip():
        if declared.request_required:
            raise InvalidInputError("a JSON object body is required")
        raw = b"{}"
    try:
        return model.model_validate_json(raw)
    except ValidationError as error:
        raise InvalidInputError(f"invalid body: {_problems(error)}") from None


class _Schemas:
    """Component schemas collected while the operations are built."""

    def __init__(self) -> None:
        self.components: dict[str, Any] = {}

    def ref(self, model: type[BaseModel]) -> dict[str, Any]:
        schema = model.model_json_schema(ref_template=_REF_PREFIX + "{model}")
        self.components.update(schema.pop("$defs", {}))
        self.components[model.__name__] = schema
        return {"$ref": _REF_PREFIX + model.__name__}


def _parameters(where: str, params: tuple[Param, ...]) -> list[dict[str, Any]]:
    return [
        {
            "name": p.name,
            "in": where,
            "required": True if where == "path" else p.required,
            "description": p.description,
            "schema": dict(p.schema),
        }
        for p in params
    ]


def _path_names(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{")]


def _operation(path: str, method: str, described: Endpoint, schemas: _Schemas) -> dict[str, Any]:
    declared = [p.name for p in described.path]
    if sorted(declared) != sorted(_path_names(path)):
        raise ValueError(f"{method} {path}: path parameters declared {declared}")
    operation: dict[str, Any] = {
        "operationId": _operation_id(method, path),
        "summary": described.summary,
        "tags": list(described.tags),
        "security": [{scheme: []} for scheme in _SCHEMES[described.security]],
        "parameters": _parameters("path", described.path)
        + _parameters("query", described.query)
        + _parameters("header", described.headers),
        "responses": {},
    }
    if described.description:
        operation["description"] = described.description
    if isinstance(described.request, Binary):
        operation["requestBody"] = {
            "required": described.request_required,
            "description": described.request.description,
            "content": {
                described.request.media_type: {"schema": {"type": "string", "format": "binary"}}
            },
        }
    elif described.request is not None:
        operation["requestBody"] = {
            "required": described.request_required,
            "content": {"application/json": {"schema": schemas.ref(described.request)}},
        }
    responses: dict[str, Any] = operation["responses"]
    for status, body in sorted(described.responses.items()):
        if isinstance(body, Binary):
            content = {body.media_type: {"schema": {"type": "string", "format": "binary"}}}
            text = body.description
        else:
            content = {"application/json": {"schema": schemas.ref(body)}}
            text = (body.__doc__ or _STATUS_TEXT.get(status, "")).strip().split("\n")[0]
        responses[str(status)] = {"description": text, "content": content}
        if status in described.location:
            responses[str(status)]["headers"] = {
                "Location": {"description": "The status URL", "schema": {"type": "string"}}
            }
    error_ref = schemas.ref(ErrorBody)
    for status in sorted({*described.errors, *_AUTH_ERRORS[described.security]}):
        responses[str(status)] = {
            "description": _STATUS_TEXT.get(status, "Error"),
            "content": {"application/json": {"schema": error_ref}},
        }
    return operation


def _operation_id(method: str, path: str) -> str:
    words = [method.lower()]
    for part in path.strip("/").split("/"):
        cleaned = "".join(c if c.isalnum() else "_" for c in part.strip("{}"))
        words.append(("by_" if part.startswith("{") else "") + cleaned)
    return "_".join(w for w in words if w)


def route_path(route: web.AbstractRoute) -> str | None:
    """The route's path as the document writes it (`{key:.+}` becomes `{key}`)."""
    if route.resource is None:
        return None
    info = route.resource.get_info()
    path = info.get("formatter") or info.get("path")
    return path if isinstance(path, str) else None


def is_excluded(path: str, excluded: Mapping[str, str]) -> bool:
    return path in excluded or any(
        key.endswith("/*") and path.startswith(key[:-1]) for key in excluded
    )


def openapi_document(
    app: web.Application,
    *,
    title: str,
    version: str,
    description: str,
    excluded: Mapping[str, str],
) -> dict[str, Any]:
    """The OpenAPI 3.1 document of every described route; `excluded` maps the paths left
    out on purpose to why (a key ending in `/*`: every path under it, e.g. HTML pages).
    A route neither described nor excluded is an error."""
    schemas = _Schemas()
    paths: dict[str, dict[str, Any]] = {}
    for route in app.router.routes():
        path = route_path(route)
        if route.method == "HEAD" or path is None:
            continue
        described = endpoint_of(route.handler)
        if is_excluded(path, excluded):
            continue
        if described is None:
            raise ValueError(f"{route.method} {path} has no @endpoint and is not excluded")
        operation = _operation(path, route.method, described, schemas)
        paths.setdefault(path, {})[route.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "info": {"title": title, "version": version, "description": description},
        "paths": paths,
        "components": {
            "schemas": dict(sorted(schemas.components.items())),
            "securitySchemes": _SECURITY_SCHEMES,
        },
    }
