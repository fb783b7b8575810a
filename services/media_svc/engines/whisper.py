"""Speech to text with faster-whisper (CTranslate2), loaded once per worker process.

The model comes from the assembled models directory (`make models`), never from a hub:
the path is a directory, which faster-whisper loads as it is, and HF_HUB_OFFLINE is set
in the worker process so no library call can reach the network behind our back.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from services.media_svc.engines.media_decode import SAMPLE_RATE
from services.media_svc.models import is_assembled
from services.media_svc.processors.languages import (
    DEFAULT_CANDIDATES,
    LanguageChoice,
    choose_language,
    script_prompt,
)

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt


# Short clips get a token budget: unclear speech can send the decoder into a loop that
# runs to the model's 448 tokens at each of the six fallback temperatures. Measured on a
# 4 s espeak-ng Hindi note: 28 s without the budget, 17 s with it (the fallbacks remain).
# 24 tokens a second is 1.8 times the densest speech measured (Hindi in Devanagari, 13.6
# a second; English 3.8). Longer clips span several windows, whose prompts grow with the
# previous text up to the model's limit, so they keep the default.
SHORT_CLIP_SECONDS = 8.0
TOKENS_PER_SECOND = 24
TOKEN_MARGIN = 32


def token_budget(seconds: float) -> int | None:
    """The most tokens a clip of `seconds` may decode to, None for long clips."""
    if seconds > SHORT_CLIP_SECONDS:
        return None
    return int(TOKENS_PER_SECOND * math.ceil(seconds)) + TOKEN_MARGIN


class ModelMissingError(RuntimeError):
    """The model directory is absent or incomplete; the message says how to fix it."""


@dataclass(frozen=True, slots=True)
class DecodeSettings:
    beam_size: int = 5
    # Silero voice activity detection: skips silence (faster, fewer hallucinations).
    vad: bool = True
    # With bot languages: below this share of their probability, the bot's first wins.
    language_min_probability: float = 0.5
    # The languages detection may choose when the bot has none (`languages.py`).
    candidates: tuple[str, ...] = DEFAULT_CANDIDATES


@dataclass(frozen=True, slots=True)
class Transcript:
    # "" when no speech was found.
    text: str
    # None when there was no speech to decide on.
    language: LanguageChoice | None
    # Seconds of speech the voice activity detector kept (all of it without VAD).
    speech_seconds: float


@dataclass(frozen=True, slots=True)
class Detection:
    """The language chosen for a clip with speech, before decoding."""

    choice: LanguageChoice
    speech_seconds: float
    # The first pass's lazy segments when they already decode in the chosen language
    # without a prompt (reused, so the common case decodes once); else None.
    segments: Iterable[Any] | None


def check_model_dir(model_dir: Path) -> None:
    """A CTranslate2 Whisper model directory has model.bin, a readable config.json and
    a tokenizer (tokenizer.json or vocabulary.*); anything else fails here, naming the
    directory and what is wrong, instead of deep inside CTranslate2."""
    fix = (
        "run `make models` (python -m services.media_svc.models assemble) or set MEDIA_MODELS_DIR"
        if model_dir.name == "whisper-base"
        else "point the pool's model_path at a CTranslate2 Whisper model directory "
        "(ct2-transformers-converter output: model.bin, config.json, tokenizer.json)"
    )
    if not (model_dir / "model.bin").is_file() or (
        model_dir.name == "whisper-base" and not is_assembled(model_dir)
    ):
        raise ModelMissingError(f"no complete Whisper model in {model_dir}: {fix}")
    try:
        config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise ModelMissingError(
            f"{model_dir}/config.json cannot be read ({type(error).__name__}: {error}): {fix}"
        ) from None
    if not isinstance(config, dict):
        raise ModelMissingError(f"{model_dir}/config.json is not a JSON object: {fix}")
    if not (model_dir / "tokenizer.json").is_file() and not any(model_dir.glob("vocabulary.*")):
        raise ModelMissingError(f"{model_dir} has no tokenizer.json or vocabulary file: {fix}")


class WhisperEngine:
    """A loaded Whisper model; `transcribe` is safe to call for job after job."""

    def __init__(self, model: Any, model_dir: Path) -> None:
        self._model = model
        self.model_dir = model_dir
        self.supported_languages: frozenset[str] = frozenset(model.supported_languages)

    @classmethod
    def load(cls, model_dir: Path, cpu_threads: int = 0) -> WhisperEngine:
        """int8 on CPU. A model directory that is not a complete model fails with a
        message naming the directory and the command that assembles it."""
        check_model_dir(model_dir)
        # huggingface_hub reads HF_HUB_OFFLINE when it is imported (by faster_whisper),
        # so it is set before that import, not at this module's.
        os.environ["HF_HUB_OFFLINE"] = "1"
        from faster_whisper import WhisperModel  # noqa: PLC0415 - after HF_HUB_OFFLINE

        model = WhisperModel(
            str(model_dir),
            device="cpu",
            compute_type="int8",
            cpu_threads=cpu_threads,
            local_files_only=True,
        )
        return cls(model, model_dir)

    def transcribe(
        self,
        samples: npt.NDArray[np.float32],
        settings: DecodeSettings,
        languages: Sequence[str] = (),
    ) -> Transcript:
        detection = self.detect(samples, settings, languages)
        if detection is None:
            return Transcript("", None, 0.0)
        return self.decode(samples, settings, detection)

    def detect(
        self,
        samples: npt.NDArray[np.float32],
        settings: DecodeSettings,
        languages: Sequence[str] = (),
    ) -> Detection | None:
        """None when there is no speech. Otherwise the language, chosen among the
        candidates (`choose_language`) from every language's probability, which one
        encoder pass over the first 30 s of speech gives."""
        bot = tuple(code for code in languages if code in self.supported_languages)
        candidates = tuple(c for c in settings.candidates if c in self.supported_languages)
        if len(samples) == 0:
            return None
        # The segments are decoded lazily: this call runs the VAD and the detection.
        segments, info = self._model.transcribe(
            samples,
            beam_size=settings.beam_size,
            vad_filter=settings.vad,
            language=None,
            max_new_tokens=token_budget(len(samples) / SAMPLE_RATE),
        )
        speech_seconds = float(info.duration_after_vad if settings.vad else info.duration)
        if speech_seconds <= 0:
            return None
        # An English-only model detects nothing: it answers "en" with no list.
        probabilities = info.all_language_probs or [
            (info.language, float(info.language_probability))
        ]
        choice = choose_language(probabilities, candidates, bot, settings.language_min_probability)
        reusable = choice.code == info.language and script_prompt(choice.code) is None
        return Detection(choice, speech_seconds, segments if reusable else None)

    def decode(
        self, samples: npt.NDArray[np.float32], settings: DecodeSettings, detection: Detection
    ) -> Transcript:
        """Decodes in the chosen language; where Whisper drifts between scripts, the
        decoder's context is a prompt in the right one."""
        segments = detection.segments
        if segments is None:
            segments, _ = self._model.transcribe(
                samples,
                beam_size=settings.beam_size,
                vad_filter=settings.vad,
                language=detection.choice.code,
                initial_prompt=script_prompt(detection.choice.code),
                max_new_tokens=token_budget(len(samples) / SAMPLE_RATE),
            )
        # A budget can end a segment inside a multi-byte character.
        pieces = (segment.text.replace("\ufffd", "") for segment in segments)
        text = " ".join(" ".join(piece.split()) for piece in pieces).strip()
        return Transcript(text, detection.choice if text else None, detection.speech_seconds)
