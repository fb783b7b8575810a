"""Reading a request's JSON object body, with the error every API route gives for one
that is not (the caller's 400, nothing changed)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from services.common.errors import InvalidInputError


async def json_object(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError as error:
        raise InvalidInputError(f"body is not valid JSON: {error}") from error
    if not isinstance(body, dict):
        raise InvalidInputError("body must be a JSON object")
    return body
