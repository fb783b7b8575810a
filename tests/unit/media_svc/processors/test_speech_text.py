"""The language rule and the text blocks of audio and video, without a model."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

from faster_whisper.tokenizer import _LANGUAGE_CODES
from hypothesis import given
from hypothesis import strategies as st

from services.media_svc.processors.audio import AudioProcessor
from services.media_svc.processors.base import kind_title
from services.media_svc.processors.languages import (
    LanguageChoice,
    choose_language,
    language_name,
    whisper_languages,
)
from services.media_svc.processors.speech_text import (
    render_audio,
    render_video,
    unique_lines,
)
from services.media_svc.processors.video import VideoProcessor

ENGLISH = LanguageChoice("en", "en", 0.9, fell_back=False)


def test_detection_wins_without_configured_languages() -> None:
    assert choose_language("th", 0.2, (), 0.5) == LanguageChoice("th", "th", 0.2, False)


def test_unsure_or_unexpected_detection_falls_back_to_the_first_language() -> None:
    assert choose_language("en", 0.36, ("de", "en"), 0.5).code == "de"
    assert choose_language("en", 0.9, ("de", "es"), 0.5) == LanguageChoice("de", "en", 0.9, True)
    assert choose_language("es", 0.9, ("de", "es"), 0.5).code == "es"


@given(
    detected=st.sampled_from(["en", "de", "es", "fr"]),
    probability=st.floats(0, 1),
    languages=st.lists(st.sampled_from(["en", "de", "es"]), max_size=3, unique=True),
    bar=st.floats(0, 1),
)
def test_the_choice_is_always_the_detection_or_the_first_language(
    detected: str, probability: float, languages: list[str], bar: float
) -> None:
    choice = choose_language(detected, probability, languages, bar)
    kept = not languages or (detected in languages and probability >= bar)
    assert choice.code == (detected if kept else languages[0])
    assert choice.fell_back is not kept
    assert (choice.detected, choice.probability) == (detected, probability)


def test_bot_language_codes_are_mapped_to_whisper_and_unknown_ones_dropped() -> None:
    assert whisper_languages(["DE", "jv", "xx", "de", " en "]) == ("de", "jw", "en")
    assert language_name("de") == "German"
    assert language_name("xx") == "xx"


def test_every_whisper_language_has_a_name() -> None:
    assert {code for code in _LANGUAGE_CODES if language_name(code) == code} == set()


def test_audio_block() -> None:
    assert kind_title("MEDIA_KIND_GIF") == "GIF"
    assert (
        render_audio("MEDIA_KIND_VOICE_NOTE", 12.2, 12.2, False, "Hi there.", ENGLISH, 100)
        == "[Voice note, 0:12, English] Hi there."
    )
    spanish = LanguageChoice("es", "es", 0.9, False)
    assert render_audio("MEDIA_KIND_AUDIO", 1200, 900, True, "Hola", spanish, 100) == (
        "[Audio, 20:00, Spanish, transcribed first 15:00] Hola"
    )
    assert render_audio("MEDIA_KIND_VOICE_NOTE", 5, 5, False, "", None, 100) == (
        "[Voice note, 0:05: no speech detected]"
    )
    assert render_audio("MEDIA_KIND_AUDIO", 10800, 900, True, "", None, 100) == (
        "[Audio, 3:00:00: no speech detected in the first 15:00]"
    )


def test_audio_block_is_bounded_with_a_marker() -> None:
    text = render_audio("MEDIA_KIND_VOICE_NOTE", 60, 60, False, "word " * 500, ENGLISH, 200)
    assert text.startswith("[Voice note, 1:00, English] word word")
    assert text.endswith("more characters not shown]")
    assert len(text) < 260


def test_screen_text_is_deduplicated_across_frames() -> None:
    assert unique_lines(["OPEN  DAILY", "6AM", "open daily", "", "6am", "Sale"]) == [
        "OPEN DAILY",
        "6AM",
        "Sale",
    ]


def test_video_blocks() -> None:
    common = {"decoded_seconds": 32.0, "cut": False, "screen_note": None, "max_chars": 500}
    assert (
        render_video(
            "MEDIA_KIND_VIDEO",
            32,
            has_audio=True,
            speech="See you there.",
            language=ENGLISH,
            screen_lines=["OPEN DAILY", "6AM"],
            **common,  # type: ignore[arg-type]
        )
        == '[Video, 0:32] Speech (English): "See you there." Text on screen: "OPEN DAILY / 6AM"'
    )
    assert (
        render_video(
            "MEDIA_KIND_GIF",
            4,
            has_audio=False,
            speech="",
            language=None,
            screen_lines=[],
            **common,  # type: ignore[arg-type]
        )
        == "[GIF, 0:04: no text found]"
    )
    assert (
        render_video(
            "MEDIA_KIND_VIDEO_NOTE",
            9,
            has_audio=True,
            speech="",
            language=None,
            screen_lines=[],
            **common,  # type: ignore[arg-type]
        )
        == "[Video note, 0:09: no speech or text found]"
    )


def test_parsing_options_imports_no_media_library() -> None:
    # The parent (and the gateway, queue_svc) import processors and parse their options;
    # only worker processes may pay for PyAV, numpy, CTranslate2, onnxruntime or Pillow.
    script = (
        "import sys\n"
        "from services.media_svc.processors.audio import AudioProcessor\n"
        "from services.media_svc.processors.video import VideoProcessor\n"
        "AudioProcessor.parse_options({'beam_size': 2})\n"
        "VideoProcessor.parse_options({'max_frames': 2})\n"
        "heavy = {'av', 'numpy', 'faster_whisper', 'ctranslate2', 'onnxruntime', 'PIL',"
        " 'rapidocr', 'cv2'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=Path(__file__).resolve().parents[4],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.strip() == "[]"


def test_parsed_options_cross_the_process_boundary() -> None:
    audio = AudioProcessor.parse_options({"beam_size": 3, "max_duration_seconds": 60})
    video = VideoProcessor.parse_options({"max_frames": 2, "vad": False})
    assert pickle.loads(pickle.dumps(audio)) == audio
    assert pickle.loads(pickle.dumps(video)) == video
    assert AudioProcessor.limits(audio).max_duration_seconds == 60
    assert VideoProcessor.limits(video).max_duration_seconds == 900
