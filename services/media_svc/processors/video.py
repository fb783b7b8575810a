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
    ProcessingOutcome,
    ProcessingSuccess,
    option_number,
)
from services.media_svc.processors.contract import (
    BlockingProcessor,
    ProcessorInput,
    ProcessorLimits,
)
from services.media_svc.processors.languages import LanguageChoice, whisper_languages
from services.media_svc.processors.speech_options import SpeechOptions, parse_speech_options
from services.media_svc.processors.speech_text import (
    corrupt_failure,
    render_video,
    too_large_failure,
    unique_lines,
)

if TYPE_CHECKING:
    from pathlib import Path

    import numpy as np
    import numpy.typing as npt
    from PIL import Image

    from services.media_svc.engines.ocr import OcrEngine
    from services.media_svc.engines.whisper import WhisperEngine

VIDEO_KINDS = frozenset({"MEDIA_KIND_VIDEO", "MEDIA_KIND_GIF", "MEDIA_KIND_VIDEO_NOTE"})
_MAX_FRAMES_LIMIT = 10
# Mean absolute difference (0-255) of two 64x36 grey thumbnails below which two key
# frames count as the same picture: a slide shown for the whole video is read once.
_SAME_PICTURE = 3.0
# Standard deviation of that thumbnail below which a frame is one plain colour.
_PLAIN_PICTURE = 2.0


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
        from services.media_svc.engines.ocr import OcrEngine
        from services.media_svc.engines.whisper import WhisperEngine

        return VideoEngine(
            whisper=WhisperEngine.load(options.speech.model_dir, options.speech.cpu_threads),
            ocr=OcrEngine.load(threads=options.speech.cpu_threads),
        )

    @classmethod
    def process(
        cls, engine: VideoEngine, options: VideoOptions, item: ProcessorInput
    ) -> ProcessingOutcome:
        from services.media_svc.engines.media_decode import MediaDecodeError, probe_video

        limits = options.limits
        if item.path is None:
            return corrupt_failure(item.media_kind, "no staged file")
        if item.size > limits.max_file_bytes:
            return too_large_failure(item.media_kind, item.size, limits.max_file_bytes)
        try:
            info = probe_video(item.path)
        except MediaDecodeError as error:
            return corrupt_failure(item.media_kind, str(error))
        if not info.has_audio and not info.has_video:
            return corrupt_failure(item.media_kind, "no audio or video stream")
        speech = (
            _transcribe(engine.whisper, options, item.path, item.languages)
            if info.has_audio
            else _Speech()
        )
        duration = info.duration_seconds or speech.duration_seconds
        lines: list[str] = []
        screen_note: str | None = None
        frames_read = 0
        if info.has_video:
            span = min(duration, limits.max_duration_seconds)
            lines, frames_read, screen_note = _screen_text(
                engine.ocr, item.path, span, options.max_frames, limits.max_pixels
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
            )
        )


def _transcribe(
    engine: WhisperEngine, options: VideoOptions, path: Path, languages: tuple[str, ...]
) -> _Speech:
    from services.media_svc.engines.media_decode import MediaDecodeError, decode_audio
    from services.media_svc.engines.whisper import DecodeSettings

    speech = options.speech
    try:
        clip = decode_audio(path, speech.limits.max_duration_seconds)
    except MediaDecodeError as error:
        # A broken audio track still leaves the pictures to read.
        return _Speech(error=str(error))
    transcript = engine.transcribe(
        clip.samples,
        DecodeSettings(speech.beam_size, speech.vad, speech.language_min_probability),
        languages=whisper_languages(languages),
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
    from services.media_svc.engines.media_decode import (
        FrameTooLargeError,
        MediaDecodeError,
        frame_times,
        key_frames,
    )

    try:
        frames = key_frames(path, frame_times(span, max_frames), max_pixels)
    except FrameTooLargeError:
        return [], 0, "not read (frames above the pixel limit)"
    except MediaDecodeError:
        return [], 0, None
    import numpy as np

    lines: list[str] = []
    thumbnails: list[npt.NDArray[np.float32]] = []
    for frame in frames:
        thumbnail = _thumbnail(frame)
        # OCR costs about a second a frame: skip pictures already read and plain ones
        # (black fade-ins, an empty background) that cannot hold text.
        if float(thumbnail.std()) < _PLAIN_PICTURE or any(
            float(np.mean(np.abs(thumbnail - earlier))) < _SAME_PICTURE for earlier in thumbnails
        ):
            continue
        thumbnails.append(thumbnail)
        lines.extend(ocr.read_lines(frame))
    return unique_lines(lines), len(frames), None


def _thumbnail(image: Image.Image) -> npt.NDArray[np.float32]:
    import numpy as np

    return np.asarray(image.convert("L").resize((64, 36)), dtype=np.float32)
