"""AudioProcessor on real speech: espeak-ng voices encoded as ogg/opus voice notes, run
through the real Whisper base model exactly as a worker process does (options parsed,
engine loaded once, one `process` per job)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from services.common.errors import InvalidInputError
from services.media_svc.engines.whisper import ModelMissingError, WhisperEngine
from services.media_svc.processors.audio import AudioProcessor
from services.media_svc.processors.base import (
    ProcessingFailure,
    ProcessingProgress,
    ProcessingSuccess,
)
from services.media_svc.processors.contract import ProcessorInput
from services.media_svc.processors.speech_options import SpeechOptions
from tests.helpers import media_samples

VOICE = "MEDIA_KIND_VOICE_NOTE"
Run = Callable[..., ProcessingSuccess | ProcessingFailure]


@pytest.fixture(scope="module")
def engine(whisper_model_dir: Path) -> WhisperEngine:
    return AudioProcessor.load_engine(_options())


def _options(**raw: Any) -> SpeechOptions:
    return AudioProcessor.parse_options(raw)


@pytest.fixture
def run(engine: WhisperEngine) -> Run:
    def run(
        path: Path,
        kind: str = VOICE,
        languages: tuple[str, ...] = (),
        **raw: Any,
    ) -> ProcessingSuccess | ProcessingFailure:
        item = ProcessorInput(
            media_kind=kind,
            mime="audio/ogg",
            path=path,
            size=path.stat().st_size,
            languages=languages,
        )
        outcome = AudioProcessor.process(engine, _options(**raw), item)
        assert not isinstance(outcome, ProcessingProgress), "these notes fit in one chunk"
        return outcome

    return run


def _text(outcome: ProcessingSuccess | ProcessingFailure) -> str:
    assert isinstance(outcome, ProcessingSuccess), outcome
    return outcome.text


@pytest.mark.parametrize(
    ("voice", "sentence", "language", "expected_words"),
    [
        (
            "en",
            "The quick brown fox jumps over the lazy dog. Please call me back tomorrow.",
            "English",
            ["quick", "brown", "fox", "lazy", "dog", "call me back", "tomorrow"],
        ),
        (
            "es",
            "Hola, me llamo Carlos. Quiero reservar una mesa para mañana por la noche.",
            "Spanish",
            ["carlos", "reservar", "mesa", "mañana", "noche"],
        ),
        (
            "de",
            "Guten Morgen. Ich möchte einen Termin für nächste Woche vereinbaren.",
            "German",
            ["guten morgen", "termin", "nächste woche"],
        ),
    ],
)
def test_voice_note_becomes_its_transcript_with_detected_language(
    run: Run,
    tmp_path: Path,
    voice: str,
    sentence: str,
    language: str,
    expected_words: list[str],
) -> None:
    note = media_samples.voice_note(sentence, voice, tmp_path / "note.ogg")
    text = _text(run(note))
    head, _, transcript = text.partition("] ")
    assert re.fullmatch(rf"\[Voice note, 0:0\d, {language}(, unsure: \d+%)?", head), text
    for word in expected_words:
        assert word in transcript.lower(), (word, text)


def test_bot_language_replaces_a_detection_outside_its_languages(run: Run, tmp_path: Path) -> None:
    # One and a half seconds of German that Whisper base takes for English ("Yeah,
    # good.") when detecting freely; the bot's configured language decides instead.
    note = media_samples.voice_note("Ja, gut.", "de", tmp_path / "short.ogg")
    free = _text(run(note))
    hinted = _text(run(note, languages=("de",)))
    assert ", German]" not in free, free
    assert re.match(r"\[Voice note, 0:0\d, German(, unsure: \d+%)?\] ", hinted), hinted
    assert "gut" in hinted.lower(), hinted


def test_unsure_detection_falls_back_to_the_first_language(run: Run, tmp_path: Path) -> None:
    # English is one of the bot's languages, but no detection reaches a bar of 1.0, so
    # the bot's first language is used.
    note = media_samples.voice_note("Thank you very much.", "en", tmp_path / "thanks.ogg")
    unsure = _text(run(note, languages=("es", "en"), language_min_probability=1.0))
    assert re.match(r"\[Voice note, 0:0\d, Spanish, unsure: \d+%\] ", unsure), unsure


def test_silent_voice_note_says_no_speech(run: Run, tmp_path: Path) -> None:
    note = media_samples.write_voice_note(media_samples.silence(3.0), tmp_path / "quiet.ogg")
    assert _text(run(note)) == "[Voice note, 0:03: no speech detected]"


def test_long_audio_is_transcribed_up_to_the_limit_and_marked_cut(run: Run, tmp_path: Path) -> None:
    speech = media_samples.read_mono(
        media_samples.speak("Good morning everyone.", "en", tmp_path / "start.wav")
    )
    gap = media_samples.silence(4.0)
    note = media_samples.write_voice_note(
        np.concatenate([speech, gap, speech, gap]), tmp_path / "long.ogg"
    )
    # Three seconds are too short for a sure detection: the bot's language decides.
    text = _text(run(note, kind="MEDIA_KIND_AUDIO", languages=("en",), max_duration_seconds=3))
    assert re.match(r"\[Audio, 0:1\d, English(, unsure: \d+%)?, transcribed first 0:03\] ", text), (
        text
    )
    assert "good morning" in text.lower(), text


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda data: os.urandom(4096), id="garbage"),
        pytest.param(lambda data: data[:100], id="truncated-headers"),
        pytest.param(lambda data: b"", id="empty"),
        pytest.param(lambda data: b"OggS" + os.urandom(2000), id="fake-ogg"),
    ],
)
def test_undecodable_audio_is_a_corrupt_marker(
    run: Run, tmp_path: Path, damage: Callable[[bytes], bytes]
) -> None:
    good = media_samples.write_voice_note(media_samples.silence(1.0), tmp_path / "good.ogg")
    broken = tmp_path / "broken.ogg"
    broken.write_bytes(damage(good.read_bytes()))
    outcome = run(broken)
    assert isinstance(outcome, ProcessingFailure), outcome
    assert outcome.reason == "corrupt"
    assert outcome.marker == "[Corrupted voice note: could not be decoded]"


def test_file_over_the_size_limit_is_refused_before_decoding(run: Run, tmp_path: Path) -> None:
    note = media_samples.write_voice_note(media_samples.silence(1.0), tmp_path / "n.ogg")
    outcome = run(note, max_file_bytes=10)
    assert isinstance(outcome, ProcessingFailure)
    assert (outcome.reason, outcome.marker) == (
        "too_large",
        "[Voice note not processed: too large]",
    )


@pytest.mark.parametrize(
    ("raw", "named"),
    [
        ({"beam": 5}, "unknown options ['beam']"),
        ({"beam_size": 0}, "options.beam_size"),
        ({"beam_size": 2.5}, "options.beam_size"),
        ({"vad": "yes"}, "options.vad"),
        ({"language_min_probability": 1.5}, "options.language_min_probability"),
        ({"model": "../etc"}, "options.model"),
        ({"cpu_threads": -1}, "options.cpu_threads"),
        ({"max_duration_seconds": 0}, "options.max_duration_seconds"),
    ],
)
def test_bad_options_are_refused_naming_the_option(raw: dict[str, Any], named: str) -> None:
    with pytest.raises(InvalidInputError, match=named.replace("[", r"\[").replace("]", r"\]")):
        AudioProcessor.parse_options(raw)


def test_options_default_to_the_models_directory(tmp_path: Path) -> None:
    options = AudioProcessor.parse_options({"models_dir": str(tmp_path), "beam_size": 1})
    assert options.model_dir == tmp_path / "whisper-base"
    assert options.beam_size == 1
    assert options.vad is True


_OFFLINE_SCRIPT = """
import socket, sys
from pathlib import Path

def unreachable(*args, **kwargs):
    raise OSError(101, "Network is unreachable (test)")

socket.socket.connect = unreachable
socket.socket.connect_ex = unreachable
socket.create_connection = unreachable
socket.getaddrinfo = unreachable

from services.media_svc.processors.audio import AudioProcessor
from services.media_svc.processors.contract import ProcessorInput

options = AudioProcessor.parse_options({})
engine = AudioProcessor.load_engine(options)
note = Path(sys.argv[1])
item = ProcessorInput("MEDIA_KIND_VOICE_NOTE", "audio/ogg", note, size=note.stat().st_size)
print(AudioProcessor.process(engine, options, item).text)
"""


def test_engine_loads_and_transcribes_with_the_network_unreachable(
    tmp_path: Path, whisper_model_dir: Path
) -> None:
    note = media_samples.write_voice_note(media_samples.silence(1.0), tmp_path / "n.ogg")
    env = {
        key: value
        for key, value in os.environ.items()
        if "proxy" not in key.lower() and not key.startswith("HF_")
    }
    env["MEDIA_MODELS_DIR"] = str(whisper_model_dir.parent)
    done = subprocess.run(
        [sys.executable, "-c", _OFFLINE_SCRIPT, str(note)],
        cwd=Path(__file__).resolve().parents[4],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[Voice note, 0:01: no speech detected]"


def test_a_missing_or_partial_model_fails_at_load_naming_the_fix(tmp_path: Path) -> None:
    options = AudioProcessor.parse_options({"models_dir": str(tmp_path)})
    with pytest.raises(ModelMissingError, match="run `make models`"):
        AudioProcessor.load_engine(options)
    (tmp_path / "whisper-base").mkdir()
    (tmp_path / "whisper-base" / "model.bin").write_bytes(b"half a model")
    with pytest.raises(ModelMissingError, match=re.escape(str(tmp_path / "whisper-base"))):
        AudioProcessor.load_engine(options)
