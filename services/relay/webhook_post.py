"""One signed webhook POST through the SSRF guard, and what its answer means for the
message: delivered, worth retrying, or permanent (retrying will not change it).

The relay and the gateway's dead-letter retry both post through here, so a retried dead
letter is signed, bounded and classified exactly like a first delivery."""

from __future__ import annotations

import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

import aiohttp

from services.common.errors import InvalidInputError
from services.common.outbound_http import (
    ForbiddenDestinationError,
    OutboundClient,
    RedirectRefusedError,
    ResponseTooLargeError,
    read_capped,
)
from services.relay.signing import (
    ATTEMPT_HEADER,
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    signature,
)

# How much of a failed answer's body is kept for the operator (the dead letter's reason).
SNIPPET_BYTES = 256
# 4xx answers that say "later", not "never".
_TRANSIENT_4XX = frozenset({408, 425, 429})
# Redirects that say the receiver moved for good: the configuration must change.
_PERMANENT_3XX = frozenset({301, 308})


@dataclass(frozen=True, slots=True)
class Attempt:
    """The outcome of one POST.

    `outcome` is one of delivered, http_error, redirect, timeout, connection_error,
    refused_destination (the metrics' label); `status` the HTTP status when one came."""

    outcome: str
    status: int | None
    permanent: bool
    reason: str
    # A 2xx answer's body (read up to the cap), where a reply may be.
    payload: bytes = b""
    # Seconds the receiver asked us to wait (Retry-After on a 429 or 503).
    retry_after: float | None = None

    @property
    def delivered(self) -> bool:
        return self.outcome == "delivered"

    @property
    def status_class(self) -> str:
        return "none" if self.status is None else f"{self.status // 100}xx"


def is_permanent(status: int) -> bool:
    """Whether an answer with this status will be the same on every retry."""
    if 400 <= status < 500:
        return status not in _TRANSIENT_4XX
    return status in _PERMANENT_3XX


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _printable(data: bytes) -> str:
    text = data.decode("utf-8", errors="replace")
    return "".join(c if c.isprintable() else " " for c in text).strip()


class WebhookPoster:
    """Posts one message body to a webhook: signed, no redirects followed, the answer
    read up to `max_response_bytes`, everything within `timeout_seconds`."""

    def __init__(
        self, client: OutboundClient, *, timeout_seconds: float, max_response_bytes: int
    ) -> None:
        self._client = client
        self._timeout = timeout_seconds
        self._cap = max_response_bytes

    async def post(self, url: str, secret: str, key: str, body: bytes, attempt: int) -> Attempt:
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: signature(secret, timestamp, body),
            IDEMPOTENCY_HEADER: key,
            ATTEMPT_HEADER: str(attempt),
        }
        try:
            async with self._client.stream(
                "POST", url, data=body, headers=headers, timeout_seconds=self._timeout
            ) as response:
                return await self._answer(response)
        except (ForbiddenDestinationError, InvalidInputError) as error:
            return Attempt("refused_destination", None, True, str(error))
        except RedirectRefusedError as error:  # only with follow_redirects > 0
            return Attempt("redirect", None, True, str(error))
        except TimeoutError:
            return Attempt("timeout", None, False, f"no complete answer within {self._timeout} s")
        except aiohttp.ClientError as error:
            return Attempt("connection_error", None, False, f"{type(error).__name__}: {error}")

    async def _answer(self, response: aiohttp.ClientResponse) -> Attempt:
        status = response.status
        if 200 <= status < 300:
            try:
                payload = await read_capped(response, self._cap)
            except ResponseTooLargeError:
                # The receiver accepted the message; only its reply is lost.
                return Attempt(
                    "delivered",
                    status,
                    False,
                    f"answer over {self._cap} bytes: connection closed, reply ignored",
                )
            return Attempt("delivered", status, False, "", payload)
        # Never drained: a huge error page costs one small read, then the connection.
        snippet = _printable(await response.content.read(SNIPPET_BYTES))
        response.close()
        if 300 <= status < 400:
            location = response.headers.get("Location", "")
            return Attempt(
                "redirect",
                status,
                status in _PERMANENT_3XX,
                f"HTTP {status} redirect to {location[:200]!r} not followed; configure the"
                " final URL",
            )
        reason = f"HTTP {status} {response.reason or ''}".strip()
        if snippet:
            reason += f": {snippet}"
        retry_after = (
            _retry_after(response.headers.get("Retry-After")) if status in (429, 503) else None
        )
        return Attempt("http_error", status, is_permanent(status), reason, b"", retry_after)
