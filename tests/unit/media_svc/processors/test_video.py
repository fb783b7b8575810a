"""VideoProcessor on videos made here: H.264/MPEG-4 frames with text drawn by Pillow,
espeak-ng speech as the AAC track, through the real Whisper and OCR engines."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

from services.common.errors import InvalidInputError
from services.media_svc.processors.base import (
    ProcessingFailure,
    ProcessingProgress,
    ProcessingSuccess,
)
from services.media_svc.processors.contract import ProcessorInput
from services.media_svc.processors.video import VideoEngine, VideoProcessor
from tests.helpers import media_samples


@pytest.fixture(scope="module")
def engine(whisper_model_dir: Path) -> VideoEngine:
    return VideoProcessor.load_engine(VideoProcessor.parse_options({}))


def _run(
    engine: VideoEngine, path: Path, kind: str = "MEDIA_KIND_VIDEO", **raw: Any
) -> ProcessingSuccess | ProcessingFailure:
    item = ProcessorInput(media_kind=kind, mime="video/mp4", path=path, size=path.stat().st_size)
    outcome = VideoProcessor.process(engine, VideoProcessor.parse_options(raw), item)
    assert not isinstance(outcome, ProcessingProgress), "video is never chunked"
    return outcome


def _text(outcome: ProcessingSuccess | ProcessingFailure) -> str:
    assert isinstance(outcome, ProcessingSuccess), outcome
    return outcome.text


def test_video_gives_speech_and_text_on_screen_once(engine: VideoEngine, tmp_path: Path) -> None:
    speech = media_samples.read_mono(
        media_samples.speak(
            "Welcome to the gym. Your class starts at nine.", "en", tmp_path / "v.wav"
        )
    )
    # The same notice on every key frame, then a second one: each line reaches the bot once.
    notice = media_samples.text_frame(["OPEN DAILY", "SPIN CLASS 9AM"])
    price = media_samples.text_frame(["MEMBERSHIP 30 EUR"])
    video = media_samples.write_video(
        tmp_path / "clip.mp4", [notice, notice, price], 1.5, audio=speech
    )
    outcome = _run(engine, video)
    text = _text(outcome)
    match = re.fullmatch(
        r'\[Video, 0:0\d\] Speech \(English(, unsure: \d+%)?\): "(.+)" Text on screen: "(.+)"',
        text,
    )
    assert match, text
    spoken, shown = match.group(2).lower(), match.group(3)
    assert isinstance(outcome, ProcessingSuccess) and outcome.language == "en"
    assert outcome.language_probability is not None and outcome.language_probability > 0
    for word in ("welcome", "gym", "class", "starts"):
        assert word in spoken, text
    assert shown.split(" / ") == ["OPEN DAILY", "SPIN CLASS 9AM", "MEMBERSHIP 30 EUR"], text


def test_gif_without_audio_has_no_speech_part(engine: VideoEngine, tmp_path: Path) -> None:
    gif = media_samples.write_video(
        tmp_path / "gif.mp4",
        [media_samples.text_frame(["HAPPY BIRTHDAY"])],
        2.0,
        video_codec="mpeg4",
    )
    assert _text(_run(engine, gif, kind="MEDIA_KIND_GIF")) == (
        '[GIF, 0:02] Text on screen: "HAPPY BIRTHDAY"'
    )


def test_video_note_with_neither_speech_nor_text(engine: VideoEngine, tmp_path: Path) -> None:
    blank = media_samples.text_frame([])
    note = media_samples.write_video(
        tmp_path / "note.mp4", [blank], 2.0, audio=media_samples.silence(2.0)
    )
    assert _text(_run(engine, note, kind="MEDIA_KIND_VIDEO_NOTE")) == (
        "[Video note, 0:02: no speech or text found]"
    )


def test_frames_above_the_pixel_limit_are_not_decoded(engine: VideoEngine, tmp_path: Path) -> None:
    gif = media_samples.write_video(
        tmp_path / "big.mp4", [media_samples.text_frame(["SECRET"])], 1.0, video_codec="mpeg4"
    )
    assert _text(_run(engine, gif, kind="MEDIA_KIND_GIF", max_pixels=1000)) == (
        "[GIF, 0:01] Text on screen: not read (frames above the pixel limit)"
    )


@pytest.mark.parametrize("cut", [0, 300, 0.5])
def test_undecodable_video_is_a_corrupt_marker(
    engine: VideoEngine, tmp_path: Path, cut: float
) -> None:
    good = media_samples.write_video(
        tmp_path / "good.mp4", [media_samples.text_frame(["X"])], 1.0, video_codec="mpeg4"
    )
    data = good.read_bytes()
    # Random bytes, the first 300 bytes, the first half (an MP4's index is at its end).
    broken_bytes = (
        os.urandom(4096) if cut == 0 else data[: int(cut if cut > 1 else len(data) * cut)]
    )
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(broken_bytes)
    outcome = _run(engine, broken)
    assert isinstance(outcome, ProcessingFailure), outcome
    assert (outcome.reason, outcome.marker) == (
        "corrupt",
        "[Corrupted video: could not be decoded]",
    )


def test_max_frames_is_validated() -> None:
    assert VideoProcessor.parse_options({"max_frames": 5}).max_frames == 5
    for bad in (0, 11, 2.5, "3"):
        with pytest.raises(InvalidInputError, match=r"options\.max_frames"):
            VideoProcessor.parse_options({"max_frames": bad})
    with pytest.raises(InvalidInputError, match="unknown options"):
        VideoProcessor.parse_options({"frames": 3})
