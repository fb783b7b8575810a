"""The published contract, served: `GET /openapi.json` (the OpenAPI 3.1 document built
from the routes' `@endpoint` declarations, openapi.py) and `GET /docs` (Swagger UI,
vendored from npm `swagger-ui-dist` into static/swagger-ui/, no CDN). Both open without
a credential: the document holds no secret, and Postman, n8n or a browser import it by
URL; every call made from the docs still needs its token."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from aiohttp import web

from services.gateway.console_pages import CONSOLE_PATHS
from services.gateway.openapi import openapi_document

DOCUMENT_PATH = "/openapi.json"
DOCS_PATH = "/docs"
# The API's own version (the document's info.version): raised when a route or a body
# changes in a way a client would notice.
API_VERSION = "1.0.0"
_ASSETS = Path(__file__).parent / "static" / "swagger-ui"

#: Paths the document leaves out on purpose, and why (a route neither described nor here
#: fails the build; tests/integration/test_openapi_contract.py checks both ways).
EXCLUDED: Mapping[str, str] = MappingProxyType(
    {
        "/ws": "the Node servers' WebSocket (frames defined by protos/chatbot/wire/v1)",
        DOCUMENT_PATH: "this document itself",
        DOCS_PATH: "the interactive docs page (HTML)",
        DOCS_PATH + "/{filename}": "the docs page's static files (Swagger UI)",
        **CONSOLE_PATHS,
    }
)


def is_docs_path(path: str) -> bool:
    """The document, the docs page or one of its files: open without a credential
    (http_app.py's middleware)."""
    return path in (DOCUMENT_PATH, DOCS_PATH) or path.startswith(DOCS_PATH + "/")


_DESCRIPTION = """\
The gateway's HTTP API: bots' configuration and lifecycle, pairing a WhatsApp account,
sending messages through the durable outbox, webhook dead letters, per-bot API tokens.
Authenticate with `Authorization: Bearer <token>`: the operator token (every route), or a
per-bot token (its own bot's routes that are not operator-only). Errors answer
`{"error": "<sentence>"}`; a 4xx changes nothing. The routes tagged
"internal (Node servers)" are for the Node servers' own credential only."""

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Chatbot gateway API</title>
<link rel="icon" href="/docs/favicon-32x32.png">
<link rel="stylesheet" href="/docs/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/docs/swagger-ui-bundle.js"></script>
<script src="/docs/init.js"></script>
</body>
</html>
"""
# A file rather than an inline script: the page works under a script-src 'self' policy.
_INIT = """window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  persistAuthorization: false,
});
"""
_TYPES = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}


class ApiDocs:
    """Builds the document once, from the finished application (its routes are fixed
    once it starts)."""

    def __init__(self) -> None:
        self._document: bytes | None = None

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get(DOCUMENT_PATH, self.document)
        app.router.add_get(DOCS_PATH, self.page)
        app.router.add_get(DOCS_PATH + "/{filename}", self.asset)

    def build(self, app: web.Application) -> dict[str, Any]:
        return openapi_document(
            app,
            title="Chatbot gateway API",
            version=API_VERSION,
            description=_DESCRIPTION,
            excluded=EXCLUDED,
        )

    async def document(self, request: web.Request) -> web.Response:
        if self._document is None:
            self._document = json.dumps(self.build(request.app), indent=1).encode()
        return web.Response(body=self._document, content_type="application/json")

    async def page(self, request: web.Request) -> web.Response:
        return web.Response(text=_PAGE, content_type="text/html")

    async def asset(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["filename"]
        if name == "init.js":
            return web.Response(text=_INIT, content_type="text/javascript")
        path = _ASSETS / name
        # Only the vendored files by their plain names: no "..", no subdirectories.
        if "/" in name or name.startswith(".") or path.suffix not in _TYPES or not path.is_file():
            raise web.HTTPNotFound()
        return web.FileResponse(path, headers={"Content-Type": _TYPES[path.suffix]})
