"""Which engine transcribes a clip: the local Whisper model, an OpenAI-compatible
endpoint, or the one after the other.

The pool decides (`remote_mode`: `primary` asks the endpoint first, `fallback` only when
the local model fails), a bot may ask for one of them (`transcription.engine` in its
configuration: `local` never sends its audio out, `remote` asks the endpoint first when
the pool has one). The language is always chosen locally among the candidates (one
encoder pass), so both engines decode in a living language. A failure of the endpoint is
logged and the local model transcribes; the bot's text never says which engine ran.
Media longer than `max_duration_seconds` stays local, which transcribes its first part.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from services.media_svc.engines.media_decode import AudioClip
from services.media_svc.engines.remote_speech import RemoteSpeechError, transcribe_remote
from services.media_svc.engines.whisper import (
    DecodeSettings,
    Detection,
    Transcript,
    WhisperEngine,
)
from services.media_svc.processors.base import TransientProcessingError
from services.media_svc.processors.languages import (
    WHISPER_LANGUAGES,
    LanguageChoice,
    whisper_languages,
)
from services.media_svc.processors.speech_options import SpeechOptions

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

log = logging.getLogger(__name__)

_BY_NAME = {name.lower(): code for code, name in WHISPER_LANGUAGES.items()}


def decode_settings(options: SpeechOptions) -> DecodeSettings:
    return DecodeSettings(
        options.beam_size, options.vad, options.language_min_probability, options.candidates
    )


def remote_first(options: SpeechOptions, bot_engine: str = "") -> bool:
    """Whether the endpoint is asked before the local model (which sends it the file)."""
    remote = options.remote
    return remote is not None and (
        bot_engine == "remote" or (bot_engine == "" and remote.mode == "primary")
    )


def transcribe_chunk(
    engine: WhisperEngine,
    options: SpeechOptions,
    samples: npt.NDArray[np.float32],
    languages: Sequence[str],
    language: LanguageChoice | None,
) -> Transcript:
    """One chunk of long audio, by the local model: in `language` when an earlier chunk
    chose it (one language for the whole note), else detected on this chunk."""
    settings = decode_settings(options)
    if language is None:
        return engine.transcribe(samples, settings, whisper_languages(languages))
    return engine.decode(samples, settings, Detection(language, 0.0, None))


def transcribe_clip(
    engine: WhisperEngine,
    options: SpeechOptions,
    clip: AudioClip,
    path: Path,
    mime: str,
    languages: Sequence[str],
    bot_engine: str = "",
) -> Transcript:
    settings = decode_settings(options)
    bot = whisper_languages(languages)
    remote = options.remote
    first = remote_first(options, bot_engine)
    if remote is not None and first and not clip.cut:
        detection = engine.detect(clip.samples, settings, bot)
        if detection is None:
            return Transcript("", None, 0.0)
        try:
            answer = transcribe_remote(remote, path, mime, detection.choice.code)
        except RemoteSpeechError as error:
            log.warning("remote transcription failed (%s); the local model transcribes", error)
            return engine.decode(clip.samples, settings, detection)
        choice = detection.choice if answer.text else None
        return Transcript(answer.text, choice, detection.speech_seconds)
    try:
        return engine.transcribe(clip.samples, settings, bot)
    except Exception as error:
        if remote is None or first or bot_engine == "local" or clip.cut:
            raise
        log.warning("local transcription failed (%r); asking the remote endpoint", error)
        try:
            answer = transcribe_remote(remote, path, mime, bot[0] if bot else None)
        except RemoteSpeechError as remote_error:
            raise TransientProcessingError(
                f"local transcription failed ({error!r}) and so did the endpoint ({remote_error})"
            ) from error
        code = _language_code(answer.language) or (bot[0] if bot else "")
        # The endpoint gives no probability: its language is taken as it says.
        choice = LanguageChoice(code, 1.0, code, 1.0) if code and answer.text else None
        return Transcript(answer.text, choice, clip.decoded_seconds)


def _language_code(heard: str) -> str:
    """A Whisper code from what an endpoint reports (`pt`, `portuguese`), or ""."""
    lowered = heard.strip().lower()
    if lowered in WHISPER_LANGUAGES:
        return lowered
    return _BY_NAME.get(lowered, "")
