"""The language rule and the text blocks of audio and video, without a model."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

from faster_whisper.tokenizer import _LANGUAGE_CODES
from hypothesis import given
from hypothesis import strategies as st

from services.media_svc.engines.whisper import token_budget
from services.media_svc.processors.audio import AudioProcessor
from services.media_svc.processors.base import kind_title
from services.media_svc.processors.languages import (
    DEFAULT_CANDIDATES,
    WHISPER_LANGUAGES,
    LanguageChoice,
    choose_language,
    iso_language,
    language_name,
    script_prompt,
    whisper_languages,
)
from services.media_svc.processors.speech_text import (
    render_audio,
    render_video,
    unique_lines,
)
from services.media_svc.processors.video import VideoProcessor
from tests.helpers.scripts import unicode_script

ENGLISH = LanguageChoice("en", 0.9, "en", 0.9)
DEAD = ("la", "sa")


def test_detection_chooses_among_the_candidates_never_a_dead_language() -> None:
    # What Whisper base said of a 5 s Brazilian Portuguese voice note.
    heard = [("la", 0.53), ("es", 0.04), ("lv", 0.04), ("pt", 0.03), ("en", 0.03)]
    choice = choose_language(heard, DEFAULT_CANDIDATES, (), 0.5)
    assert choice == LanguageChoice("es", 0.04, "la", 0.53)
    assert choose_language([("th", 0.2), ("en", 0.1)], DEFAULT_CANDIDATES, (), 0.5).code == "th"


def test_bot_languages_narrow_the_choice_and_the_first_wins_when_unsure() -> None:
    heard = [("en", 0.36), ("de", 0.30), ("la", 0.2)]
    # de holds 0.30 / 0.66 of the bot's languages' probability: sure enough.
    assert choose_language(heard, DEFAULT_CANDIDATES, ("es", "de", "en"), 0.5).code == "en"
    assert choose_language(heard, DEFAULT_CANDIDATES, ("de", "en"), 0.6) == LanguageChoice(
        "de", 0.30, "en", 0.36, fell_back=True
    )
    # One bot language is the only choice, even one outside the pool's list.
    assert choose_language(heard, DEFAULT_CANDIDATES, ("ca",), 0.5).code == "ca"
    assert choose_language([("en", 0.9), ("es", 0.01)], (), ("es", "en"), 0.5).code == "en"


def test_no_probabilities_fall_back_to_the_bot_or_the_first_candidate() -> None:
    assert choose_language([], DEFAULT_CANDIDATES, ("pt",), 0.5).code == "pt"
    assert choose_language([], ("de", "en"), (), 0.5).code == "de"


@given(
    heard=st.lists(
        st.tuples(st.sampled_from(sorted(WHISPER_LANGUAGES)), st.floats(0, 1)),
        min_size=1,
        max_size=12,
        unique_by=lambda pair: pair[0],
    ),
    bot=st.lists(st.sampled_from(["en", "de", "pt", "hi"]), max_size=3, unique=True),
    bar=st.floats(0, 1),
)
def test_the_choice_is_a_candidate_and_the_most_likely_one_unless_the_bot_decides(
    heard: list[tuple[str, float]], bot: list[str], bar: float
) -> None:
    choice = choose_language(heard, DEFAULT_CANDIDATES, bot, bar)
    allowed = bot or DEFAULT_CANDIDATES
    assert choice.code in allowed
    assert choice.code not in DEAD
    best = max((p for code, p in heard if code in allowed), default=0.0)
    if choice.fell_back:
        assert choice.code == bot[0]
    else:
        assert choice.probability == best
    assert choice.detected_probability == max(p for _, p in heard)


def test_script_prompts_are_written_in_their_language_s_script() -> None:
    assert script_prompt("en") is None
    assert unicode_script(script_prompt("hi") or "") == "Devanagari"
    assert unicode_script(script_prompt("pa") or "") == "Gurmukhi"
    assert unicode_script(script_prompt("sr") or "") == "Cyrillic"


def test_bot_language_codes_are_mapped_to_whisper_and_unknown_ones_dropped() -> None:
    assert whisper_languages(["DE", "jv", "xx", "de", " en ", "fil"]) == ("de", "jw", "en", "tl")
    assert iso_language("jw") == "jv"
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
    spanish = LanguageChoice("es", 0.9, "es", 0.9)
    assert render_audio("MEDIA_KIND_AUDIO", 1200, 900, True, "Hola", spanish, 100) == (
        "[Audio, 20:00, Spanish, transcribed first 15:00] Hola"
    )
    assert render_audio("MEDIA_KIND_VOICE_NOTE", 5, 5, False, "", None, 100) == (
        "[Voice note, 0:05: no speech detected]"
    )
    assert render_audio("MEDIA_KIND_AUDIO", 10800, 900, True, "", None, 100) == (
        "[Audio, 3:00:00: no speech detected in the first 15:00]"
    )


def test_an_unsure_language_is_shown_with_its_probability() -> None:
    unsure = LanguageChoice("pt", 0.21, "la", 0.3)
    assert render_audio("MEDIA_KIND_VOICE_NOTE", 3, 3, False, "Oi", unsure, 100) == (
        "[Voice note, 0:03, Portuguese, unsure: 21%] Oi"
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


def test_short_clips_get_a_token_budget_above_the_densest_speech() -> None:
    # Hindi in Devanagari, the densest measured: 57 tokens for a 4.2 s sentence.
    assert token_budget(4.2) == 24 * 5 + 32 > 57 * 1.8
    assert token_budget(0.5) == 56
    assert token_budget(8.0) == 24 * 8 + 32
    assert token_budget(8.5) is None
