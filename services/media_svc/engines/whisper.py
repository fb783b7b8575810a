"""Speech to text with faster-whisper (CTranslate2), loaded once per worker process.

The model comes from the assembled models directory (`make models`), never from a hub:
the path is a directory, which faster-whisper loads as it is, and HF_HUB_OFFLINE is set
in the worker process so no library call can reach the network behind our back.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from services.media_svc.models import is_assembled
from services.media_svc.processors.languages import LanguageChoice, choose_language

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt


class ModelMissingError(RuntimeError):
    """The model directory is absent or incomplete; the message says how to fix it."""


@dataclass(frozen=True, slots=True)
class DecodeSettings:
    beam_size: int = 5
    # Silero voice activity detection: skips silence (faster, fewer hallucinations).
    vad: bool = True
    # Detections below it fall back to the bot's first language (when it has languages).
    language_min_probability: float = 0.5


@dataclass(frozen=True, slots=True)
class Transcript:
    # "" when no speech was found.
    text: str
    # None when there was no speech to decide on.
    language: LanguageChoice | None
    # Seconds of speech the voice activity detector kept (all of it without VAD).
    speech_seconds: float


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
        if not (model_dir / "model.bin").is_file() or (
            model_dir.name == "whisper-base" and not is_assembled(model_dir)
        ):
            raise ModelMissingError(
                f"no complete Whisper model in {model_dir}: run `make models` "
                "(python -m services.media_svc.models assemble) or set MEDIA_MODELS_DIR"
            )
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
        """Detects the language (one pass over the first 30 s), applies the bot's
        languages (`choose_language`), and decodes. The segments are decoded lazily, so a
        fallback that re-runs with the chosen language wastes only the detection."""
        allowed = tuple(code for code in languages if code in self.supported_languages)
        if len(samples) == 0:
            return Transcript("", None, 0.0)
        segments, info = self._model.transcribe(
            samples, beam_size=settings.beam_size, vad_filter=settings.vad, language=None
        )
        speech_seconds = float(info.duration_after_vad if settings.vad else info.duration)
        if speech_seconds <= 0:
            return Transcript("", None, 0.0)
        choice = choose_language(
            info.language,
            float(info.language_probability),
            allowed,
            settings.language_min_probability,
        )
        if choice.code != info.language:
            segments, info = self._model.transcribe(
                samples,
                beam_size=settings.beam_size,
                vad_filter=settings.vad,
                language=choice.code,
            )
        text = " ".join(" ".join(segment.text.split()) for segment in segments).strip()
        return Transcript(text, choice if text else None, speech_seconds)
