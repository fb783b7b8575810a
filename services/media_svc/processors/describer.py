"""The optional image describer: an OpenAI-compatible vision endpoint an operator
configures per pool (`describer_url`, off by default). Its text is an extra; any failure
or timeout is logged and the job goes on without it.

Standard library only (urllib): it runs inside the pool's worker process, next to OCR.
"""

from __future__ import annotations

import json
import logging
import os
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from services.common.errors import InvalidInputError
from services.media_svc.processors.base import option_number, option_string

_log = logging.getLogger(__name__)

OPTIONS = frozenset(
    {"describer_url", "describer_model", "describer_api_key_env", "describer_timeout_seconds"}
)
DEFAULT_PROMPT = (
    "Describe this image for a chatbot that cannot see it, in one or two sentences. "
    "Do not transcribe text in it; that is done separately."
)
# Longest description kept; an endpoint that rambles does not crowd out the OCR text.
MAX_DESCRIPTION_CHARS = 600
# Longest answer body read from the endpoint.
_MAX_RESPONSE_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class DescriberSettings:
    """Where and how to ask. The API key itself stays in the environment variable named
    by `api_key_env`, read when a request is made, so it never travels in the options."""

    url: str
    model: str
    api_key_env: str = ""
    timeout_seconds: float = 10.0

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> DescriberSettings | None:
        """None when `describer_url` is absent or empty (the hook is off)."""
        url = option_string(options, "describer_url", "").strip()
        if not url:
            extra = sorted(key for key in OPTIONS & set(options) if key != "describer_url")
            if extra:
                raise InvalidInputError(f"options {extra}: need options.describer_url")
            return None
        parts = urlsplit(url)
        if parts.scheme not in {"http", "https"} or not parts.netloc:
            raise InvalidInputError(f"options.describer_url: must be an http(s) URL, got {url!r}")
        model = option_string(options, "describer_model", "").strip()
        if not model:
            raise InvalidInputError("options.describer_model: required with describer_url")
        key_env = option_string(options, "describer_api_key_env", "").strip()
        if key_env and key_env not in os.environ:
            raise InvalidInputError(
                f"options.describer_api_key_env: environment variable {key_env} is not set"
            )
        timeout = option_number(options, "describer_timeout_seconds", 10.0, 0.1)
        return cls(url=url, model=model, api_key_env=key_env, timeout_seconds=timeout)


def describe(settings: DescriberSettings, image_data_uri: str) -> str | None:
    """The endpoint's description of the image, or None (logged) on any failure."""
    body = {
        "model": settings.model,
        "max_tokens": 200,
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": DEFAULT_PROMPT},
                    {"type": "image_url", "image_url": {"url": image_data_uri}},
                ],
            }
        ],
    }
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if settings.api_key_env:
        headers["Authorization"] = f"Bearer {os.environ.get(settings.api_key_env, '')}"
    request = urllib.request.Request(
        settings.url, data=json.dumps(body).encode(), headers=headers, method="POST"
    )
    # The socket timeout bounds each wait; the deadline bounds an answer that drips.
    deadline = time.monotonic() + settings.timeout_seconds
    try:
        with urllib.request.urlopen(request, timeout=settings.timeout_seconds) as response:
            answer = bytearray()
            while chunk := response.read(64 * 1024):
                answer += chunk
                if len(answer) > _MAX_RESPONSE_BYTES:
                    raise ValueError(f"answer longer than {_MAX_RESPONSE_BYTES} bytes")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"answer not complete in {settings.timeout_seconds} s")
            payload = json.loads(answer)
        text = payload["choices"][0]["message"]["content"]
        if isinstance(text, list):  # content parts, as some servers answer
            text = " ".join(str(part.get("text", "")) for part in text if isinstance(part, dict))
        if not isinstance(text, str):
            raise TypeError(f"content is {type(text).__name__}")
    except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
        # URLError, HTTPError and timeouts are OSErrors; bad JSON is a ValueError.
        _log.warning("image describer %s failed: %s: %s", settings.url, type(exc).__name__, exc)
        return None
    cleaned = " ".join(text.split())
    if len(cleaned) > MAX_DESCRIPTION_CHARS:
        cleaned = cleaned[: MAX_DESCRIPTION_CHARS - 1].rstrip() + "…"
    return cleaned or None
