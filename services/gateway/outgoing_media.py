"""The bytes of an outgoing media message: fetched by the gateway from the bot's URL
through the SSRF guard (common/outbound_http.py), or given inline; bounded by one cap
either way, so Node never fetches anything a bot names."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath

import aiohttp
from chatbot.wire.v1 import frames_pb2 as w
from yarl import URL

from services.common.errors import InvalidInputError
from services.common.outbound_http import OutboundClient, OutboundError
from services.gateway.outgoing_request import MediaSource

#: Same-host redirects followed when fetching (CDNs redirect to a canonical path).
MEDIA_REDIRECTS = 3


class MediaFetchError(InvalidInputError):
    """The media URL could not be used: refused, unreachable, too large, not 2xx."""


@dataclass(frozen=True)
class OutgoingMediaLoader:
    client: OutboundClient
    max_bytes: int
    timeout_seconds: float

    async def load(self, source: MediaSource) -> w.OutgoingMedia:
        if source.inline is not None:
            data, mime = source.inline, source.mime_type
        else:
            assert source.url is not None
            data, fetched_mime = await self._fetch(source.url)
            mime = source.mime_type or fetched_mime
        if len(data) > self.max_bytes:
            raise MediaFetchError(f"media is {len(data)} bytes, more than the {self.max_bytes} cap")
        if not data:
            raise MediaFetchError("media is empty")
        if not mime:
            raise MediaFetchError("media.mime_type is required (the URL gave no Content-Type)")
        media = w.OutgoingMedia(data=data, mime_type=mime[:255])
        filename = source.filename or _name_in(source.url)
        if filename:
            media.filename = filename[:1024]
        return media

    async def _fetch(self, url: str) -> tuple[bytes, str | None]:
        try:
            response = await self.client.request(
                "GET",
                url,
                timeout_seconds=self.timeout_seconds,
                max_body_bytes=self.max_bytes,
                follow_redirects=MEDIA_REDIRECTS,
            )
        except OutboundError as error:
            raise MediaFetchError(f"media.url refused: {error}") from None
        except TimeoutError:
            raise MediaFetchError(
                f"media.url did not answer within {self.timeout_seconds:g} s"
            ) from None
        except aiohttp.ClientError as error:
            raise MediaFetchError(f"media.url could not be fetched: {error!r}") from None
        if not 200 <= response.status < 300:
            raise MediaFetchError(f"media.url answered HTTP {response.status}")
        content_type = response.headers.get("Content-Type")
        return response.body, content_type.strip() if content_type else None


def _name_in(url: str | None) -> str | None:
    if url is None:
        return None
    name = PurePosixPath(URL(url).path).name
    return name or None
