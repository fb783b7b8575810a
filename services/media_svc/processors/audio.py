"""Voice notes and audio files become their transcript, duration and language.

    [Voice note, 0:12, English] I'll be there at five.

Audio longer than the pool's `chunk_seconds` is transcribed one chunk per run
(`audio_chunks.py`), so a long note never holds the pool's slot for its whole length.

Options: see `speech_options` (model, candidate languages, remote endpoint, limits). The
engine (the Whisper model) is loaded once per worker process; decoding and
transcription run in the worker process for every job (`engines/speech.py` decides
between the local model and a remote endpoint).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from services.media_svc.processors.audio_chunks import AudioProgress, chunk_end
from services.media_svc.processors.base import (
    ProcessingFailure,
    ProcessingOutcome,
    ProcessingProgress,
    ProcessingSuccess,
    corrupt_failure,
    staged_file,
)
from services.media_svc.processors.contract import BlockingProcessor, ProcessorInput
from services.media_svc.processors.languages import LanguageChoice, iso_language
from services.media_svc.processors.speech_options import (
    DEFAULT_CHUNK_SECONDS,
    SpeechOptions,
    chunk_seconds,
    parse_speech_options,
)
from services.media_svc.processors.speech_text import render_audio

if TYPE_CHECKING:
    from services.media_svc.engines.media_decode import AudioClip
    from services.media_svc.engines.whisper import WhisperEngine

# The media kinds this processor is meant for (the definitions route them here).
AUDIO_KINDS = frozenset({"MEDIA_KIND_VOICE_NOTE", "MEDIA_KIND_AUDIO"})


class AudioProcessor(BlockingProcessor[SpeechOptions, "WhisperEngine"]):
    @classmethod
    def parse_options(cls, options: Mapping[str, Any]) -> SpeechOptions:
        parsed = parse_speech_options(options, "audio", frozenset({"chunk_seconds"}))
        return replace(parsed, chunk_seconds=chunk_seconds(options))

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
        if _chunked(options, clip, item):
            return _next_chunk(engine, options, clip, item)
        transcript = speech.transcribe_clip(
            engine, options, clip, path, item.mime, item.languages, item.speech_engine
        )
        return _success(item, clip, transcript.text, transcript.language, limits.max_output_chars)


def _chunked(options: SpeechOptions, clip: AudioClip, item: ProcessorInput) -> bool:
    """Long audio goes chunk by chunk, unless the endpoint takes the whole file first."""
    from services.media_svc.engines import speech  # noqa: PLC0415 - worker only

    if item.checkpoint is not None:
        return True
    return (
        options.chunk_seconds > 0
        and clip.decoded_seconds > options.chunk_seconds
        and not speech.remote_first(options, item.speech_engine)
    )


def _next_chunk(
    engine: WhisperEngine, options: SpeechOptions, clip: AudioClip, item: ProcessorInput
) -> ProcessingOutcome:
    from services.media_svc.engines import speech  # noqa: PLC0415 - worker only

    progress = AudioProgress.resume(item.checkpoint, len(clip.samples))
    # A checkpoint written with another chunk length (the pool changed) still resumes.
    seconds = options.chunk_seconds or DEFAULT_CHUNK_SECONDS
    end = chunk_end(clip.samples, progress.offset, seconds)
    transcript = speech.transcribe_chunk(
        engine,
        options,
        clip.samples[progress.offset : end],
        item.languages,
        progress.language,
    )
    progress = progress.advanced(end, transcript.text, transcript.language)
    if not progress.done:
        return ProcessingProgress(progress.to_json(), progress.remaining)
    return _success(item, clip, progress.text(), progress.language, options.limits.max_output_chars)


def _success(
    item: ProcessorInput,
    clip: AudioClip,
    text: str,
    language: LanguageChoice | None,
    max_chars: int,
) -> ProcessingSuccess:
    return ProcessingSuccess(
        render_audio(
            item.media_kind,
            clip.duration_seconds,
            clip.decoded_seconds,
            clip.cut,
            text,
            language if text else None,
            max_chars,
        ),
        language=iso_language(language.code) if language is not None and text else None,
        language_probability=language.probability if language is not None and text else None,
    )
