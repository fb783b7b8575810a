"""Media made by the tests themselves: espeak-ng speech encoded with PyAV as WhatsApp
sends it (ogg/opus voice notes, MP4 video with H.264 + AAC), silent clips, and frames
with text drawn by Pillow. Nothing is downloaded or checked in."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import cast

import av
import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image, ImageDraw, ImageFont

OPUS_RATE = 48_000


ESPEAK_MISSING = "espeak-ng is missing: run `make apt` (scripts/apt-packages.txt lists it)"


def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


def require_espeak() -> None:
    """Fails the test when espeak-ng is missing: `make test` installs it, so its absence
    is a broken setup to report, never a reason to skip (every speech test says so)."""
    if not espeak_available():
        pytest.fail(ESPEAK_MISSING)


def speak(text: str, voice: str, path: Path, words_per_minute: int = 150) -> Path:
    """A WAV of `text` spoken by espeak-ng's `voice` (en, es, de, …)."""
    require_espeak()
    subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(words_per_minute), "-w", str(path), text],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return path


def read_mono(path: Path, rate: int = OPUS_RATE) -> npt.NDArray[np.int16]:
    """Any audio file as mono 16-bit samples at `rate`."""
    with av.open(str(path)) as container:
        resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
        chunks = [
            out.to_ndarray().reshape(-1)
            for frame in container.decode(audio=0)
            for out in resampler.resample(frame)
        ]
        chunks += [out.to_ndarray().reshape(-1) for out in resampler.resample(None)]
    return np.concatenate(chunks).astype(np.int16)


def _encode_audio(
    container: av.container.OutputContainer,
    stream: av.AudioStream,
    samples: npt.NDArray[np.int16],
    rate: int,
) -> None:
    codec = stream.codec_context.name
    frame_size = 960 if codec in {"libopus", "opus"} else 1024
    # AAC wants planar floats; Opus takes 16-bit.
    form = "fltp" if codec == "aac" else "s16"
    resampler = av.AudioResampler(format=form, layout="mono", rate=rate)
    for start in range(0, len(samples), frame_size):
        chunk = samples[start : start + frame_size]
        if len(chunk) < frame_size:
            chunk = np.pad(chunk, (0, frame_size - len(chunk)))
        frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = rate
        frame.pts = start
        frame.time_base = Fraction(1, rate)
        for converted in resampler.resample(frame):
            for packet in stream.encode(converted):
                container.mux(packet)
    for packet in stream.encode(None):
        container.mux(packet)


def write_voice_note(samples: npt.NDArray[np.int16], path: Path) -> Path:
    """An ogg/opus file, like a WhatsApp voice note, from 48 kHz mono samples."""
    with av.open(str(path), mode="w", format="ogg") as container:
        stream = container.add_stream("libopus", rate=OPUS_RATE, layout="mono")
        _encode_audio(container, stream, samples, OPUS_RATE)
    return path


def voice_note(text: str, voice: str, path: Path, words_per_minute: int = 150) -> Path:
    wav = speak(text, voice, path.with_suffix(".wav"), words_per_minute)
    return write_voice_note(read_mono(wav), path)


def silence(seconds: float) -> npt.NDArray[np.int16]:
    return np.zeros(int(seconds * OPUS_RATE), dtype=np.int16)


def text_frame(lines: Sequence[str], size: tuple[int, int] = (640, 360)) -> Image.Image:
    """Black text on white, large enough for OCR."""
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=40)
    for index, line in enumerate(lines):
        draw.text((30, 40 + 60 * index), line, fill="black", font=font)
    return image


def write_video(
    path: Path,
    frames: Sequence[Image.Image],
    seconds_per_frame: float,
    audio: npt.NDArray[np.int16] | None = None,
    video_codec: str = "libx264",
    audio_codec: str = "aac",
    fps: int = 10,
) -> Path:
    """An MP4 showing each image for `seconds_per_frame`, with an optional mono track
    (48 kHz samples)."""
    width, height = frames[0].size
    with av.open(str(path), mode="w", format="mp4") as container:
        video = cast(av.VideoStream, container.add_stream(video_codec, rate=fps))
        video.width = width
        video.height = height
        video.pix_fmt = "yuv420p"
        # Every stream exists before the first packet: the header is written then.
        sound = (
            cast(av.AudioStream, container.add_stream(audio_codec, rate=OPUS_RATE, layout="mono"))
            if audio is not None
            else None
        )
        index = 0
        for image in frames:
            for _ in range(max(1, round(seconds_per_frame * fps))):
                frame = av.VideoFrame.from_image(image)  # type: ignore[no-untyped-call]
                frame.pts = index
                index += 1
                for packet in video.encode(frame):
                    container.mux(packet)
        for packet in video.encode(None):
            container.mux(packet)
        if audio is not None and sound is not None:
            _encode_audio(container, sound, audio, OPUS_RATE)
    return path
