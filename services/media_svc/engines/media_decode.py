"""Decoding audio and video with PyAV (FFmpeg): bounded in time and memory.

- `decode_audio`: the first audio stream of any container as 16 kHz mono float32, the
  sample format Whisper takes, decoding only up to `max_seconds` (a three-hour file
  costs what its first `max_seconds` cost) and reporting the full duration.
- `probe_video` and `key_frames`: duration, audio presence, and a few frames spread over
  the video (found by seeking, not by decoding everything in between), each frame's
  size checked against the pixel limit before it is converted.

Anything FFmpeg cannot read ends in `MediaDecodeError`, never in a crash of the caller.
PyAV and numpy are imported with this module: only worker processes import it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import av
import av.container
import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from PIL import Image

SAMPLE_RATE = 16_000
# Two frames are the same picture (a slide shown for the whole video) when under 0.2 %
# of their 160x90 grey thumbnails' pixels differ by more than 40 levels: re-encoding
# noise stays far below that, a changed word of text far above. A frame whose
# thumbnail varies less than 2 levels (standard deviation) is one plain colour.
_THUMBNAIL = (160, 90)
_CHANGED_LEVELS = 40
_SAME_PICTURE_SHARE = 0.002
_PLAIN_PICTURE = 2.0
# Frames decoded after a seek while looking for the target time: a keyframe interval
# of several seconds at 30 fps stays well under it.
_MAX_FRAMES_AFTER_SEEK = 600


class MediaDecodeError(Exception):
    """The file is not decodable media (garbage, truncated headers, no usable stream)."""


class FrameTooLargeError(MediaDecodeError):
    """A video's frames exceed the pixel limit; they are not decoded."""


@dataclass(frozen=True, slots=True)
class AudioClip:
    # 16 kHz mono float32 in [-1, 1], at most max_seconds long.
    samples: npt.NDArray[np.float32]
    # The whole file's duration (container metadata, else what could be read).
    duration_seconds: float
    # True when `samples` holds less than the whole file (the limit, or damage).
    cut: bool

    @property
    def decoded_seconds(self) -> float:
        return len(self.samples) / SAMPLE_RATE


@dataclass(frozen=True, slots=True)
class VideoInfo:
    duration_seconds: float
    has_audio: bool
    has_video: bool
    width: int
    height: int


def _open(path: Path) -> av.container.InputContainer:
    try:
        # Undecodable tags (a sender's title in a broken charset) must not sink the audio.
        return av.open(str(path), mode="r", metadata_errors="ignore")
    except (av.FFmpegError, UnicodeDecodeError, ValueError, OSError) as error:
        raise MediaDecodeError(f"not a readable media container: {error}") from error


def _container_seconds(container: av.container.InputContainer) -> float:
    """Duration from the container header (0.0 when it does not say)."""
    if container.duration is not None and container.duration > 0:
        return container.duration / av.time_base
    longest = 0.0
    for stream in container.streams:
        if stream.duration is not None and stream.time_base is not None:
            longest = max(longest, float(stream.duration * stream.time_base))
    return longest


def _stream_seconds(stream: av.AudioStream) -> float:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    return 0.0


def decode_audio(path: Path, max_seconds: float) -> AudioClip:
    """The first audio stream, resampled to 16 kHz mono, cut at `max_seconds`."""
    limit = int(max_seconds * SAMPLE_RATE)
    with _open(path) as container:
        if not container.streams.audio:
            raise MediaDecodeError("no audio stream")
        stream = container.streams.audio[0]
        # The audio stream's own length: a video's container may run longer.
        declared = _stream_seconds(stream) or _container_seconds(container)
        # 16-bit like faster-whisper's own file decoding, so a job sees the samples a
        # bare `transcribe(path)` would (float resampling alone changes some words).
        resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
        chunks: list[npt.NDArray[np.int16]] = []
        collected = 0
        stopped_early = False
        last_time = 0.0
        try:
            for frame in container.decode(stream):
                if frame.time is not None:
                    last_time = float(frame.time) + frame.samples / max(frame.sample_rate, 1)
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1).astype(np.int16, copy=False))
                    collected += out.samples
                if collected >= limit:
                    stopped_early = True
                    break
            else:
                for out in resampler.resample(None):
                    chunks.append(out.to_ndarray().reshape(-1).astype(np.int16, copy=False))
                    collected += out.samples
        except (av.FFmpegError, ValueError) as error:
            # Damage after some audio: keep what was decoded and say it was cut.
            if collected == 0:
                raise MediaDecodeError(f"audio could not be decoded: {error}") from error
            stopped_early = True
    if collected == 0:
        if declared > 0:
            # Headers promising audio, not one decodable frame.
            raise MediaDecodeError("no decodable audio frames")
        return AudioClip(np.zeros(0, dtype=np.float32), 0.0, cut=False)
    samples = np.concatenate(chunks)[:limit].astype(np.float32) / 32768.0
    decoded = len(samples) / SAMPLE_RATE
    return AudioClip(samples, max(declared, last_time, decoded), cut=stopped_early)


def probe_video(path: Path) -> VideoInfo:
    with _open(path) as container:
        video = container.streams.video[0] if container.streams.video else None
        return VideoInfo(
            duration_seconds=_container_seconds(container),
            has_audio=bool(container.streams.audio),
            has_video=video is not None,
            width=video.codec_context.width if video is not None else 0,
            height=video.codec_context.height if video is not None else 0,
        )


def frame_times(duration: float, count: int) -> list[float]:
    """`count` instants spread over `duration`: the start, then evenly (the middle for
    two); one instant when the duration is unknown."""
    if count <= 1 or duration <= 0:
        return [0.0]
    return [duration * index / count for index in range(count)]


def key_frames(path: Path, times: list[float], max_pixels: int) -> list[Image.Image]:
    """The first frame at or after each time; fewer when the video ends or is damaged
    (a frame that cannot be found is skipped, the others still count)."""
    images: list[Image.Image] = []
    with _open(path) as container:
        if not container.streams.video:
            return images
        stream = container.streams.video[0]
        declared = stream.codec_context.width * stream.codec_context.height
        if declared > max_pixels:
            raise FrameTooLargeError(f"frames of {declared:,} pixels exceed {max_pixels:,}")
        stream.thread_type = "AUTO"
        for target in times:
            frame = _frame_at(container, stream, target, max_pixels)
            if frame is not None:
                images.append(frame)
    return images


def _frame_at(
    container: av.container.InputContainer,
    stream: av.VideoStream,
    target: float,
    max_pixels: int,
) -> Image.Image | None:
    try:
        if target > 0 and stream.time_base is not None:
            container.seek(int(target / stream.time_base), stream=stream, backward=True)
        else:
            container.seek(0)
        for index, frame in enumerate(container.decode(stream)):
            if frame.width * frame.height > max_pixels:
                raise FrameTooLargeError(
                    f"frame {frame.width}x{frame.height} exceeds {max_pixels:,} pixels"
                )
            if frame.time is None or frame.time >= target - 0.05:
                image: Image.Image = frame.to_image()  # type: ignore[no-untyped-call]
                return image
            if index >= _MAX_FRAMES_AFTER_SEEK:
                return None
    except av.FFmpegError:
        return None
    return None


def _thumbnail(image: Image.Image) -> npt.NDArray[np.float32]:
    return np.asarray(image.convert("L").resize(_THUMBNAIL), dtype=np.float32)


def distinct_pictures(frames: list[Image.Image]) -> list[Image.Image]:
    """The frames worth reading, in order: not plain, not a repeat of an earlier one
    (compared on small grey thumbnails, so re-encoding noise does not count)."""
    kept: list[Image.Image] = []
    seen: list[npt.NDArray[np.float32]] = []
    for frame in frames:
        thumbnail = _thumbnail(frame)
        if float(thumbnail.std()) < _PLAIN_PICTURE or any(
            float(np.mean(np.abs(thumbnail - earlier) > _CHANGED_LEVELS)) < _SAME_PICTURE_SHARE
            for earlier in seen
        ):
            continue
        seen.append(thumbnail)
        kept.append(frame)
    return kept
