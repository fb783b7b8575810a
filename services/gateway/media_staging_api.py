"""PUT /internal/media/{bot_id}/{media_processing_id}: Node stages the bytes of a media
message it downloaded, streamed as the request body (chunked), into the MediaStore.

The bot's quota is checked first against its staged-byte counter in the store (one
read; 507 with the counter and the quota, which Node turns into the
quotaExceededMediaMessage frame); then the body is written chunk by chunk up to the
media size cap (413 past it) and accounted. 201 means the bytes are durable in the
MediaStore: only then does Node send the frame naming them. A body cut off (Node
crashed, the connection dropped) leaves nothing stored and nothing counted; a retry of
the same id replaces the object and moves the counter by the difference."""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator
from typing import Protocol

from aiohttp import web

from services.common.media_store import CHUNK_BYTES, MediaTooLargeError, StagedMedia, check_media_id
from services.common.store import BotConfigStore
from services.gateway import api_models as m
from services.gateway.node_internal_api import INTERNAL
from services.gateway.openapi import BOT_ID, Binary, Param, Security, endpoint

log = logging.getLogger(__name__)

GIB = 1024**3
# Node's staging stager maps this status to the quotaExceededMediaMessage frame.
QUOTA_EXCEEDED_STATUS = 507


class MediaConfigStore(BotConfigStore, Protocol):
    """Where the bot's quota (`media_storage_quota_gb`) is read."""


def quota_bytes(quota_gb: float) -> int:
    return math.floor(quota_gb * GIB)


class MediaStagingApi:
    def __init__(self, staged: StagedMedia, configs: MediaConfigStore, max_bytes: int) -> None:
        self._staged = staged
        self._configs = configs
        self._max_bytes = max_bytes

    @endpoint(
        summary="Stage the bytes of a media message Node downloaded",
        tags=INTERNAL,
        security=Security.NODE,
        path=(
            BOT_ID,
            Param(
                "media_processing_id",
                "The media job's id (a lower-case UUID4) the frame will name.",
                {"type": "string", "format": "uuid"},
            ),
        ),
        request=Binary(
            "application/octet-stream",
            "The media bytes, streamed (chunked); at most MAX_MEDIA_BYTES.",
        ),
        responses={201: m.MediaStaged, 413: m.MediaTooLarge, 507: m.MediaQuotaExceeded},
        errors=(400,),
    )
    async def put(self, request: web.Request) -> web.Response:
        bot_id = request.match_info["bot_id"]
        media_processing_id = check_media_id(request.match_info["media_processing_id"])
        declared = request.content_length
        if declared is not None and declared > self._max_bytes:
            return _too_large(self._max_bytes)
        config = await self._configs.get_bot_config(bot_id)
        if config is not None:
            quota = quota_bytes(config.media_storage_quota_gb)
            used = await self._staged.used_bytes(bot_id)
            if used >= quota:
                log.warning(
                    "bot %s: media quota exceeded (%d of %d bytes staged); %s refused",
                    bot_id,
                    used,
                    quota,
                    media_processing_id,
                )
                return web.json_response(
                    {"error": "media quota exceeded", "used_bytes": used, "quota_bytes": quota},
                    status=QUOTA_EXCEEDED_STATUS,
                )
        try:
            size = await self._staged.stage(
                bot_id, media_processing_id, _body(request), self._max_bytes
            )
        except MediaTooLargeError:
            return _too_large(self._max_bytes)
        log.debug("bot %s: staged %s (%d bytes)", bot_id, media_processing_id, size)
        return web.json_response(
            {"media_processing_id": media_processing_id, "size": size}, status=201
        )


async def _body(request: web.Request) -> AsyncIterator[bytes]:
    async for chunk in request.content.iter_chunked(CHUNK_BYTES):
        yield chunk
    # aiohttp ends the stream quietly when a chunked body stops without its last chunk
    # (the peer went away): such a body is incomplete and must never be stored.
    if not request.content.is_eof():
        raise ConnectionResetError("request body ended before it was complete")


def _too_large(max_bytes: int) -> web.Response:
    return web.json_response(
        {"error": f"media larger than the {max_bytes} bytes allowed", "max_bytes": max_bytes},
        status=413,
    )
