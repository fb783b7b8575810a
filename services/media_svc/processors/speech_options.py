"""Options of the processors that transcribe speech (audio and video pools).

Parsed once in the parent when the definitions load; the result is a frozen, picklable
dataclass that the pool's worker processes receive.

- `model` (`whisper-base`): model directory name under `models_dir`
  (`$MEDIA_MODELS_DIR`, else `var/models`).
- `model_path`: absolute path of any CTranslate2 Whisper model directory (tiny …
  large-v3-turbo, distil-…); replaces `model`/`models_dir`; checked when a worker loads it.
- `beam_size` (5; 1 got stuck repeating on Spanish), `vad` (true: skip silence),
  `cpu_threads` (0 = CTranslate2's default).
- `detect_languages` (`$MEDIA_SPEECH_LANGUAGES`, else `languages.DEFAULT_CANDIDATES`): the
  Whisper codes detection may choose when the bot has no `languages`.
- `language_min_probability` (0.5): with bot languages, below this share of their
  probability the bot's first language is used.
- `remote_url`: an OpenAI-compatible `…/v1/audio/transcriptions` endpoint;
  `remote_mode` (`fallback`: local first, the endpoint when the local model fails;
  `primary`: the endpoint first, local when it fails), `remote_model` (`whisper-1`),
  `remote_api_key_env` (the NAME of the environment variable with the bearer token, never
  the token), `remote_timeout_seconds` (60), `remote_max_bytes` (25 MiB; larger files stay
  local).
- `chunk_seconds` (audio pools only; `$MEDIA_AUDIO_CHUNK_SECONDS`, else 30; 0 = never):
  audio longer than this is transcribed chunk by chunk (`audio_chunks.py`), so a short
  voice note waits at most one chunk behind a long one.
- the limit keys of `ProcessorLimits` (`max_duration_seconds`, `max_output_chars`, …).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from services.common.env import env_float
from services.common.errors import InvalidInputError
from services.media_svc.models import WHISPER_BASE, model_path, models_dir
from services.media_svc.processors.base import (
    option_bool,
    option_number,
    option_string,
    reject_unknown_options,
)
from services.media_svc.processors.contract import MIB, ProcessorLimits
from services.media_svc.processors.languages import (
    DEFAULT_CANDIDATES,
    WHISPER_LANGUAGES,
    whisper_languages,
)

# Comma-separated Whisper codes: the candidates of every speech pool without its own
# `detect_languages` option.
SPEECH_LANGUAGES_ENV = "MEDIA_SPEECH_LANGUAGES"
# Seconds per chunk of long audio in every audio pool without its own `chunk_seconds`.
AUDIO_CHUNK_ENV = "MEDIA_AUDIO_CHUNK_SECONDS"
DEFAULT_CHUNK_SECONDS = 30.0
# Shorter chunks would cut Whisper's 30 s window into pieces too small to decode well.
MIN_CHUNK_SECONDS = 10.0
REMOTE_MODES = ("primary", "fallback")
_ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]{0,127}")

SPEECH_OPTIONS = frozenset(
    {
        "model",
        "models_dir",
        "model_path",
        "beam_size",
        "vad",
        "detect_languages",
        "language_min_probability",
        "cpu_threads",
        "remote_url",
        "remote_mode",
        "remote_model",
        "remote_api_key_env",
        "remote_timeout_seconds",
        "remote_max_bytes",
    }
)


@dataclass(frozen=True, slots=True)
class RemoteSpeechOptions:
    """An OpenAI-compatible transcription endpoint, primary or fallback."""

    url: str
    mode: str = "fallback"
    model: str = "whisper-1"
    # Read in the worker process at request time; the store holds only the name.
    api_key_env: str = ""
    timeout_seconds: float = 60.0
    max_bytes: int = 25 * MIB


@dataclass(frozen=True, slots=True)
class SpeechOptions:
    model_dir: Path
    beam_size: int = 5
    vad: bool = True
    language_min_probability: float = 0.5
    cpu_threads: int = 0
    candidates: tuple[str, ...] = DEFAULT_CANDIDATES
    remote: RemoteSpeechOptions | None = None
    limits: ProcessorLimits = field(default_factory=ProcessorLimits)
    # Audio longer than this is transcribed in chunks of about this length; 0: in one go.
    chunk_seconds: float = 0.0


def _whole(options: Mapping[str, Any], key: str, default: int, minimum: int, maximum: int) -> int:
    value = option_number(options, key, default, minimum)
    if value != int(value) or value > maximum:
        raise InvalidInputError(
            f"options.{key}: must be a whole number from {minimum} to {maximum}, got {value!r}"
        )
    return int(value)


def _candidates(options: Mapping[str, Any], env: Mapping[str, str]) -> tuple[str, ...]:
    raw: Any = options.get("detect_languages")
    where = "options.detect_languages"
    if raw is None:
        text = env.get(SPEECH_LANGUAGES_ENV, "").strip()
        if not text:
            return DEFAULT_CANDIDATES
        raw, where = [code for code in text.split(",") if code.strip()], SPEECH_LANGUAGES_ENV
    if not isinstance(raw, list) or not raw or not all(isinstance(c, str) for c in raw):
        raise InvalidInputError(f"{where}: must be a non-empty list of language codes")
    known = whisper_languages(raw)
    unknown = sorted({c for c in raw if not whisper_languages([c])}, key=str.lower)
    if unknown:
        raise InvalidInputError(
            f"{where}: {unknown} are not languages Whisper knows "
            f"(codes such as {', '.join(sorted(WHISPER_LANGUAGES)[:6])}, …)"
        )
    return known


def chunk_seconds(options: Mapping[str, Any], env: Mapping[str, str] | None = None) -> float:
    """The `chunk_seconds` option, else $MEDIA_AUDIO_CHUNK_SECONDS, else 30; 0 turns
    chunking off, anything else is at least MIN_CHUNK_SECONDS."""
    if "chunk_seconds" in options:
        where = "options.chunk_seconds"
        value = option_number(options, "chunk_seconds", DEFAULT_CHUNK_SECONDS, 0.0)
    else:
        where = AUDIO_CHUNK_ENV
        environment = os.environ if env is None else env
        value = env_float(environment, AUDIO_CHUNK_ENV, DEFAULT_CHUNK_SECONDS)
    if value != 0 and not MIN_CHUNK_SECONDS <= value <= 3600:
        raise InvalidInputError(
            f"{where}: must be 0 (no chunks) or from {MIN_CHUNK_SECONDS:g} to 3600, got {value!r}"
        )
    return value


def _remote(options: Mapping[str, Any]) -> RemoteSpeechOptions | None:
    url = option_string(options, "remote_url", "").strip()
    remote_keys = {key for key in options if key.startswith("remote_")} - {"remote_url"}
    if not url:
        if remote_keys:
            raise InvalidInputError(f"options.remote_url: required with {sorted(remote_keys)}")
        return None
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname or parts.username:
        raise InvalidInputError(
            f"options.remote_url: must be an http(s) URL without credentials, got {url!r}"
        )
    mode = option_string(options, "remote_mode", "fallback")
    if mode not in REMOTE_MODES:
        raise InvalidInputError(f"options.remote_mode: must be one of {REMOTE_MODES}, got {mode!r}")
    model = option_string(options, "remote_model", "whisper-1")
    if not model or len(model) > 200:
        raise InvalidInputError("options.remote_model: must be a non-empty name")
    key_env = option_string(options, "remote_api_key_env", "")
    if key_env and not _ENV_NAME.fullmatch(key_env):
        raise InvalidInputError(
            "options.remote_api_key_env: must be the NAME of an environment variable "
            f"(A-Z, 0-9, _), got {key_env!r}"
        )
    timeout = option_number(options, "remote_timeout_seconds", 60.0, 0.001)
    if timeout > 3600:
        raise InvalidInputError("options.remote_timeout_seconds: must be at most 3600")
    return RemoteSpeechOptions(
        url=url,
        mode=mode,
        model=model,
        api_key_env=key_env,
        timeout_seconds=timeout,
        max_bytes=_whole(options, "remote_max_bytes", 25 * MIB, 1, 1024 * MIB),
    )


def _model_dir(options: Mapping[str, Any]) -> Path:
    explicit = option_string(options, "model_path", "")
    if explicit:
        if "model" in options or "models_dir" in options:
            raise InvalidInputError("options.model_path: replaces model and models_dir; give one")
        path = Path(explicit)
        if not path.is_absolute():
            raise InvalidInputError(
                f"options.model_path: must be an absolute path, got {explicit!r}"
            )
        return path
    name = option_string(options, "model", WHISPER_BASE)
    directory_text = option_string(options, "models_dir", "")
    try:
        directory = model_path(name, Path(directory_text) if directory_text else models_dir())
    except InvalidInputError as error:
        raise InvalidInputError(f"options.model: {error}") from None
    return directory.absolute()


def parse_speech_options(
    options: Mapping[str, Any],
    processor: str,
    extra: frozenset[str] = frozenset(),
    env: Mapping[str, str] | None = None,
) -> SpeechOptions:
    """Validates the speech options (`extra` names further keys the caller reads)."""
    reject_unknown_options(options, set(SPEECH_OPTIONS | ProcessorLimits.KEYS | extra), processor)
    probability = option_number(options, "language_min_probability", 0.5, 0.0)
    if probability > 1:
        raise InvalidInputError(
            f"options.language_min_probability: must be from 0 to 1, got {probability!r}"
        )
    return SpeechOptions(
        model_dir=_model_dir(options),
        beam_size=_whole(options, "beam_size", 5, 1, 20),
        vad=option_bool(options, "vad", True),
        language_min_probability=probability,
        cpu_threads=_whole(options, "cpu_threads", 0, 0, 256),
        candidates=_candidates(options, os.environ if env is None else env),
        remote=_remote(options),
        limits=ProcessorLimits.from_options(options),
    )
