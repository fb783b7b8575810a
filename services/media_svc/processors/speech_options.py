"""Options of the processors that transcribe speech (audio and video pools).

Parsed once in the parent when the definitions load; the result is a frozen, picklable
dataclass that the pool's worker processes receive.

| option | default | meaning |
|---|---|---|
| `model` | `whisper-base` | model directory name under the models directory |
| `models_dir` | `$MEDIA_MODELS_DIR` or `var/models` | where the models are |
| `beam_size` | 5 | beam search width (1 got stuck repeating on Spanish) |
| `vad` | true | skip silence with the voice activity detector |
| `language_min_probability` | 0.5 | below it, the bot's first language is used |
| `cpu_threads` | 0 | CTranslate2 threads per worker process; 0 = library default |
| limit keys | see `ProcessorLimits` | `max_duration_seconds`, `max_output_chars`, … |
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.common.errors import InvalidInputError
from services.media_svc.models import WHISPER_BASE, model_path, models_dir
from services.media_svc.processors.base import (
    option_bool,
    option_number,
    option_string,
    reject_unknown_options,
)
from services.media_svc.processors.contract import ProcessorLimits

SPEECH_OPTIONS = frozenset(
    {"model", "models_dir", "beam_size", "vad", "language_min_probability", "cpu_threads"}
)


@dataclass(frozen=True, slots=True)
class SpeechOptions:
    model_dir: Path
    beam_size: int = 5
    vad: bool = True
    language_min_probability: float = 0.5
    cpu_threads: int = 0
    limits: ProcessorLimits = field(default_factory=ProcessorLimits)


def _whole(options: Mapping[str, Any], key: str, default: int, minimum: int, maximum: int) -> int:
    value = option_number(options, key, default, minimum)
    if value != int(value) or value > maximum:
        raise InvalidInputError(
            f"options.{key}: must be a whole number from {minimum} to {maximum}, got {value!r}"
        )
    return int(value)


def parse_speech_options(
    options: Mapping[str, Any], processor: str, extra: frozenset[str] = frozenset()
) -> SpeechOptions:
    """Validates the speech options (`extra` names further keys the caller reads)."""
    reject_unknown_options(options, set(SPEECH_OPTIONS | ProcessorLimits.KEYS | extra), processor)
    name = option_string(options, "model", WHISPER_BASE)
    directory_text = option_string(options, "models_dir", "")
    try:
        directory = model_path(name, Path(directory_text) if directory_text else models_dir())
    except InvalidInputError as error:
        raise InvalidInputError(f"options.model: {error}") from None
    probability = option_number(options, "language_min_probability", 0.5, 0.0)
    if probability > 1:
        raise InvalidInputError(
            f"options.language_min_probability: must be from 0 to 1, got {probability!r}"
        )
    return SpeechOptions(
        model_dir=directory.absolute(),
        beam_size=_whole(options, "beam_size", 5, 1, 20),
        vad=option_bool(options, "vad", True),
        language_min_probability=probability,
        cpu_threads=_whole(options, "cpu_threads", 0, 0, 256),
        limits=ProcessorLimits.from_options(options),
    )
