"""Voice notes and audio files become their transcript, duration and language.

    [Voice note, 0:12, English] I'll be there at five.

Options: see `speech_options` (model, candidate languages, remote endpoint, limits). The
engine (the Whisper model) is loaded once per worker process; decoding and
transcription run in the worker process for every job (`engines/speech.py` decides
between the local model and a remote endpoint).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from services.media_svc.processors.base import (
    ProcessingFailure,
    ProcessingOutcome,
    ProcessingSuccess,
    corrupt_failure,
    staged_file,
)
from services.media_svc.processors.contract import BlockingProcessor, ProcessorInput
from services.media_svc.processors.languages import iso_language
from services.media_svc.processors.speech_options import SpeechOptions, parse_speech_options
from services.media_svc.processors.speech_text import render_audio

if TYPE_CHECKING:
    from services.media_svc.engines.whisper import WhisperEngine

# The media kinds this processor is meant for (the definitions route them here).
AUDIO_KINDS = frozenset({"MEDIA_KIND_VOICE_NOTE", "MEDIA_KIND_AUDIO"})


class AudioProcessor(BlockingProcessor[SpeechOptions, "WhisperEngine"]):
    @classmethod
    def parse_options(cls, options: Mapping[str, Any]) -> SpeechOptions:
        return parse_speech_options(options, "audio")

    @classmethod
    def load_engine(cls, options: SpeechOptions) -> WhisperEngine:
        from services.media_svc.engines import whisper  # noqa: PLC0415 - worker only

        return whisper.WhisperEngine.load(options.model_dir, options.cpu_threads)

    @classmethod
    def process(
        cls, engine: WhisperEngine, options: SpeechOptions, item: ProcessorInput
    ) -> ProcessingOutcome:
        from services.media_svc.engines import media_decode, speech  # noqa: PLC0415 - worker only

        limits = options.limits
        path = staged_file(item, limits.max_file_bytes)
        if isinstance(path, ProcessingFailure):
            return path
        try:
            clip = media_decode.decode_audio(path, limits.max_duration_seconds)
        except media_decode.MediaDecodeError as error:
            return corrupt_failure(item.media_kind, str(error))
        transcript = speech.transcribe_clip(
            engine, options, clip, path, item.mime, item.languages, item.speech_engine
        )
        language = transcript.language
        return ProcessingSuccess(
            render_audio(
                item.media_kind,
                clip.duration_seconds,
                clip.decoded_seconds,
                clip.cut,
                transcript.text,
                transcript.language,
                limits.max_output_chars,
            ),
            language=iso_language(language.code) if language is not None else None,
            language_probability=language.probability if language is not None else None,
        )
