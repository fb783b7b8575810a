"""Videos, GIFs and video notes become their speech and the text shown on screen.

    [Video, 0:32] Speech (English): "See you at six." Text on screen: "OPEN DAILY / 6AM"
    [GIF, 0:04] Text on screen: "HAPPY BIRTHDAY"

The audio track (when there is one) is transcribed like a voice note, up to
`max_duration_seconds`; a few key frames spread over that span (the first, then evenly:
`max_frames`, default 3) are read by OCR and their lines deduplicated across frames.
Options: the speech options (see `speech_options`) plus `max_frames` (1-10).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from services.common.errors import InvalidInputError
from services.media_svc.processors.base import (
    ProcessingFailure,
    ProcessingOutcome,
    ProcessingSuccess,
    corrupt_failure,
    option_number,
    staged_file,
)
from services.media_svc.processors.contract import (
    BlockingProcessor,
    ProcessorInput,
    ProcessorLimits,
)
from services.media_svc.processors.languages import LanguageChoice, iso_language
from services.media_svc.processors.speech_options import SpeechOptions, parse_speech_options
from services.media_svc.processors.speech_text import render_video, unique_lines

if TYPE_CHECKING:
    from pathlib import Path

    from services.media_svc.engines.ocr import OcrEngine
    from services.media_svc.engines.whisper import WhisperEngine

VIDEO_KINDS = frozenset({"MEDIA_KIND_VIDEO", "MEDIA_KIND_GIF", "MEDIA_KIND_VIDEO_NOTE"})
_MAX_FRAMES_LIMIT = 10


@dataclass(frozen=True, slots=True)
class VideoOptions:
    speech: SpeechOptions
    max_frames: int = 3

    @property
    def limits(self) -> ProcessorLimits:
        return self.speech.limits


@dataclass(frozen=True, slots=True)
class VideoEngine:
    whisper: WhisperEngine
    ocr: OcrEngine


@dataclass(frozen=True, slots=True)
class _Speech:
    text: str = ""
    language: LanguageChoice | None = None
    decoded_seconds: float = 0.0
    cut: bool = False
    duration_seconds: float = 0.0
    error: str | None = None


class VideoProcessor(BlockingProcessor[VideoOptions, VideoEngine]):
    @classmethod
    def parse_options(cls, options: Mapping[str, Any]) -> VideoOptions:
        speech = parse_speech_options(options, "video", extra=frozenset({"max_frames"}))
        frames = option_number(options, "max_frames", 3, 1)
        if frames != int(frames) or frames > _MAX_FRAMES_LIMIT:
            raise InvalidInputError(
                f"options.max_frames: must be a whole number from 1 to {_MAX_FRAMES_LIMIT}, "
                f"got {options.get('max_frames')!r}"
            )
        return VideoOptions(speech=speech, max_frames=int(frames))

    @classmethod
    def load_engine(cls, options: VideoOptions) -> VideoEngine:
        from services.media_svc.engines import ocr, whisper  # noqa: PLC0415 - worker only

        return VideoEngine(
            whisper=whisper.WhisperEngine.load(
                options.speech.model_dir, options.speech.cpu_threads
            ),
            ocr=ocr.OcrEngine.load(threads=options.speech.cpu_threads),
        )

    @classmethod
    def process(
        cls, engine: VideoEngine, options: VideoOptions, item: ProcessorInput
    ) -> ProcessingOutcome:
        from services.media_svc.engines import media_decode  # noqa: PLC0415 - worker only

        limits = options.limits
        path = staged_file(item, limits.max_file_bytes)
        if isinstance(path, ProcessingFailure):
            return path
        try:
            info = media_decode.probe_video(path)
        except media_decode.MediaDecodeError as error:
            return corrupt_failure(item.media_kind, str(error))
        if not info.has_audio and not info.has_video:
            return corrupt_failure(item.media_kind, "no audio or video stream")
        speech = _transcribe(engine.whisper, options, path, item) if info.has_audio else _Speech()
        duration = info.duration_seconds or speech.duration_seconds
        lines: list[str] = []
        screen_note: str | None = None
        frames_read = 0
        if info.has_video:
            span = min(duration, limits.max_duration_seconds)
            lines, frames_read, screen_note = _screen_text(
                engine.ocr, path, span, options.max_frames, limits.max_pixels
            )
        audio_read = info.has_audio and speech.error is None
        if not audio_read and frames_read == 0 and screen_note is None:
            return corrupt_failure(item.media_kind, speech.error or "no decodable frames")
        return ProcessingSuccess(
            render_video(
                item.media_kind,
                duration,
                has_audio=audio_read,
                decoded_seconds=speech.decoded_seconds,
                cut=speech.cut,
                speech=speech.text,
                language=speech.language,
                screen_lines=lines,
                screen_note=screen_note,
                max_chars=limits.max_output_chars,
            ),
            language=iso_language(speech.language.code) if speech.language else None,
            language_probability=speech.language.probability if speech.language else None,
        )


def _transcribe(
    engine: WhisperEngine, options: VideoOptions, path: Path, item: ProcessorInput
) -> _Speech:
    from services.media_svc.engines import media_decode, speech  # noqa: PLC0415 - worker only

    try:
        clip = media_decode.decode_audio(path, options.speech.limits.max_duration_seconds)
    except media_decode.MediaDecodeError as error:
        # A broken audio track still leaves the pictures to read.
        return _Speech(error=str(error))
    transcript = speech.transcribe_clip(
        engine, options.speech, clip, path, item.mime, item.languages, item.speech_engine
    )
    return _Speech(
        transcript.text,
        transcript.language,
        clip.decoded_seconds,
        clip.cut,
        clip.duration_seconds,
    )


def _screen_text(
    ocr: OcrEngine, path: Path, span: float, max_frames: int, max_pixels: int
) -> tuple[list[str], int, str | None]:
    """(deduplicated lines, frames decoded, a note when frames could not be read)."""
    from services.media_svc.engines import media_decode  # noqa: PLC0415 - worker only

    try:
        frames = media_decode.key_frames(
            path, media_decode.frame_times(span, max_frames), max_pixels
        )
    except media_decode.FrameTooLargeError:
        return [], 0, "not read (frames above the pixel limit)"
    except media_decode.MediaDecodeError:
        return [], 0, None
    lines: list[str] = []
    # OCR costs about a second a frame: pictures already read and plain ones (black
    # fade-ins, an empty background) are skipped.
    for frame in media_decode.distinct_pictures(frames):
        lines.extend(ocr.read_lines(frame))
    return unique_lines(lines), len(frames), None
