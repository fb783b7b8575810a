"""PyAV decoding bounds, on files made here (no model needed)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from services.media_svc.engines.media_decode import (
    SAMPLE_RATE,
    MediaDecodeError,
    decode_audio,
    distinct_pictures,
    frame_times,
    key_frames,
    probe_video,
)
from tests.helpers import media_samples


def test_long_audio_decodes_only_up_to_the_limit_and_reports_the_full_duration(
    tmp_path: Path,
) -> None:
    hour = media_samples.write_voice_note(media_samples.silence(120.0), tmp_path / "long.ogg")
    started = time.perf_counter()
    clip = decode_audio(hour, max_seconds=2.0)
    assert time.perf_counter() - started < 5
    assert clip.samples.dtype == np.float32
    assert len(clip.samples) == 2 * SAMPLE_RATE
    assert clip.duration_seconds == pytest.approx(120.0, abs=0.1)
    assert clip.cut
    whole = decode_audio(hour, max_seconds=900)
    assert not whole.cut
    assert whole.decoded_seconds == pytest.approx(120.0, abs=0.1)


def test_a_file_without_audio_is_refused(tmp_path: Path) -> None:
    video = media_samples.write_video(
        tmp_path / "mute.mp4", [media_samples.text_frame(["A"])], 1.0, video_codec="mpeg4"
    )
    with pytest.raises(MediaDecodeError, match="no audio stream"):
        decode_audio(video, 10)
    assert probe_video(video).has_audio is False


def test_key_frames_are_found_by_time(tmp_path: Path) -> None:
    colours = ["red", "green", "blue", "yellow"]
    frames = [Image.new("RGB", (64, 48), colour) for colour in colours]
    video = media_samples.write_video(tmp_path / "c.mp4", frames, 1.0, video_codec="mpeg4")
    times = frame_times(probe_video(video).duration_seconds, 4)
    assert times == [0.0, 1.0, 2.0, 3.0]
    found = key_frames(video, times, max_pixels=64 * 48)
    centres = [image.getpixel((32, 24)) for image in found]
    expected = [(255, 0, 0), (0, 128, 0), (0, 0, 255), (255, 255, 0)]
    assert len(centres) == 4
    for got, want in zip(centres, expected, strict=True):
        assert isinstance(got, tuple)
        assert max(abs(a - b) for a, b in zip(got[:3], want, strict=True)) < 40, centres


def test_plain_and_repeated_pictures_are_read_once() -> None:
    text = media_samples.text_frame(["HELLO"])
    other = media_samples.text_frame(["WORLD"])
    black = Image.new("RGB", text.size, "black")
    assert distinct_pictures([black, text, text.copy(), other, text]) == [text, other]
    assert frame_times(0.0, 3) == [0.0]
    assert frame_times(10.0, 2) == [0.0, 5.0]
