"""Transcription by an OpenAI-compatible `/v1/audio/transcriptions` endpoint.

One multipart POST per clip (`file`, `model`, `language`, `response_format=verbose_json`)
through the SSRF-guarded client (`services.common.outbound_http`: every address checked
on connect, no redirects, a capped answer, one total timeout; `OUTBOUND_ALLOW_HOSTS`
lets a self-hosted server on a private address through). The language is the one the
local detector chose among the candidates, so a remote engine cannot pick a dead
language either. Any failure is a `RemoteSpeechError`; the caller falls back to the local
model and logs it.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

from services.common.outbound_http import OutboundClient, OutboundError, OutboundPolicy
from services.media_svc.processors.speech_options import RemoteSpeechOptions

# A transcript of 15 minutes of speech in verbose JSON is well under this.
MAX_ANSWER_BYTES = 4 * 1024 * 1024


class RemoteSpeechError(RuntimeError):
    """The endpoint was not asked (file too large, no key) or did not answer usefully."""


@dataclass(frozen=True, slots=True)
class RemoteTranscript:
    text: str
    # What the endpoint says it heard (a code or an English name), "" when absent.
    language: str


def multipart(
    fields: list[tuple[str, str]], file_name: str, mime: str, data: bytes
) -> tuple[bytes, str]:
    """(body, content type) of a multipart/form-data request with one file part."""
    boundary = uuid.uuid4().hex
    chunks: list[bytes] = []
    for name, value in fields:
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
        chunks.append(f"{head}{value}\r\n".encode())
    safe_name = file_name.replace('"', "").replace("\r", "").replace("\n", "") or "audio"
    chunks.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{safe_name}"\r\n'
        f"Content-Type: {mime or 'application/octet-stream'}\r\n\r\n".encode()
    )
    chunks.append(data)
    chunks.append(f"\r\n--{boundary}--\r\n".encode())
    return b"".join(chunks), f"multipart/form-data; boundary={boundary}"


def transcribe_remote(
    options: RemoteSpeechOptions, path: Path, mime: str, language: str | None
) -> RemoteTranscript:
    """Blocking (the worker process has no event loop of its own); see the module doc."""
    size = path.stat().st_size
    if size > options.max_bytes:
        raise RemoteSpeechError(f"{size} bytes > remote_max_bytes {options.max_bytes}")
    headers: dict[str, str] = {}
    if options.api_key_env:
        key = os.environ.get(options.api_key_env, "")
        if not key:
            raise RemoteSpeechError(f"environment variable {options.api_key_env} is empty")
        headers["Authorization"] = f"Bearer {key}"
    fields = [("model", options.model), ("response_format", "verbose_json")]
    if language:
        fields.append(("language", language))
    body, content_type = multipart(fields, path.name + _suffix(mime), mime, path.read_bytes())
    headers["Content-Type"] = content_type
    try:
        answer = asyncio.run(_post(options, body, headers))
    except (OutboundError, OSError, TimeoutError) as error:
        raise RemoteSpeechError(f"{type(error).__name__}: {error}") from None
    status, payload = answer
    if status != 200:
        raise RemoteSpeechError(f"HTTP {status}: {payload[:200]!r}")
    try:
        document = json.loads(payload)
    except ValueError:
        raise RemoteSpeechError(f"answer is not JSON: {payload[:200]!r}") from None
    text = document.get("text") if isinstance(document, dict) else None
    if not isinstance(text, str):
        raise RemoteSpeechError("answer has no text")
    heard = document.get("language", "")
    return RemoteTranscript(" ".join(text.split()), heard if isinstance(heard, str) else "")


async def _post(
    options: RemoteSpeechOptions, body: bytes, headers: dict[str, str]
) -> tuple[int, bytes]:
    async with OutboundClient(OutboundPolicy.from_env(), limit=1) as client:
        response = await client.request(
            "POST",
            options.url,
            timeout_seconds=options.timeout_seconds,
            max_body_bytes=MAX_ANSWER_BYTES,
            data=body,
            headers=headers,
        )
    return response.status, response.body


def _suffix(mime: str) -> str:
    # Endpoints pick the decoder from the file name's extension; staged files have none.
    return {
        "audio/ogg": ".ogg",
        "audio/opus": ".ogg",
        "audio/mpeg": ".mp3",
        "audio/mp4": ".m4a",
        "audio/x-m4a": ".m4a",
        "audio/aac": ".aac",
        "audio/wav": ".wav",
        "audio/x-wav": ".wav",
        "audio/webm": ".webm",
        "audio/flac": ".flac",
        "audio/amr": ".amr",
        "video/mp4": ".mp4",
        "video/webm": ".webm",
        "video/quicktime": ".mov",
        "video/3gpp": ".3gp",
    }.get(mime, "")
