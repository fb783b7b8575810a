"""The languages people send voice notes in, through the real Whisper base model, with
no language configured on the bot: espeak-ng voices of Brazilian Portuguese, Hindi and
Indonesian. Whisper base is weak on synthetic voices in these languages (measured: on
the Portuguese note below its best guess is Latin, p=0.53), so the assertions are the
ones the product promises: a living language, the right one or a close relative, with
its probability, and Hindi written in Devanagari (without the script prompt the same
clip comes out in Urdu script)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from services.media_svc.engines.whisper import WhisperEngine
from services.media_svc.processors.audio import AudioProcessor
from services.media_svc.processors.base import ProcessingSuccess
from services.media_svc.processors.contract import ProcessorInput
from tests.helpers import media_samples
from tests.helpers.scripts import script_counts

DEAD_LANGUAGES = {"la", "sa"}
OPTIONS = AudioProcessor.parse_options({})


@pytest.fixture(scope="module")
def engine(whisper_model_dir: Path) -> WhisperEngine:
    return AudioProcessor.load_engine(OPTIONS)


def _transcribe(
    engine: WhisperEngine, path: Path, languages: tuple[str, ...] = ()
) -> ProcessingSuccess:
    item = ProcessorInput(
        "MEDIA_KIND_VOICE_NOTE",
        "audio/ogg",
        path,
        size=path.stat().st_size,
        languages=languages,
    )
    outcome = AudioProcessor.process(engine, OPTIONS, item)
    assert isinstance(outcome, ProcessingSuccess), outcome
    return outcome


@pytest.mark.parametrize(
    ("voice", "sentence", "accepted", "words"),
    [
        pytest.param(
            "pt-br",
            "Boa tarde, eu queria saber se ainda tem vaga para o curso de inglês.",
            {"pt": "Portuguese", "es": "Spanish", "gl": "Galician"},
            [],
            id="portuguese",
        ),
        pytest.param(
            "id",
            "Saya sudah transfer uangnya tadi pagi, tolong dicek ya.",
            {"id": "Indonesian", "ms": "Malay", "jv": "Javanese"},
            ["saya", "pagi", "tolong"],
            id="indonesian",
        ),
    ],
)
def test_a_voice_note_is_reported_in_a_living_language_close_to_the_spoken_one(
    engine: WhisperEngine,
    tmp_path: Path,
    voice: str,
    sentence: str,
    accepted: dict[str, str],
    words: list[str],
) -> None:
    note = media_samples.voice_note(sentence, voice, tmp_path / "note.ogg")
    outcome = _transcribe(engine, note)
    assert outcome.language in accepted, outcome
    assert outcome.language not in DEAD_LANGUAGES
    assert outcome.language_probability is not None and 0 < outcome.language_probability <= 1
    name = accepted[outcome.language]
    unsure = (
        f", unsure: {outcome.language_probability:.0%}"
        if outcome.language_probability < 0.5
        else ""
    )
    assert re.match(rf"\[Voice note, 0:0\d, {name}{unsure}\] ", outcome.text), outcome.text
    for word in words:
        assert word in outcome.text.lower(), (word, outcome.text)


def test_hindi_is_detected_and_written_in_devanagari(engine: WhisperEngine, tmp_path: Path) -> None:
    note = media_samples.voice_note("मुझे दो किलो चावल चाहिए।", "hi", tmp_path / "hi.ogg")
    outcome = _transcribe(engine, note)
    assert outcome.language == "hi", outcome
    head, _, transcript = outcome.text.partition("] ")
    assert re.fullmatch(r"\[Voice note, 0:0\d, Hindi(, unsure: \d+%)?", head), outcome.text
    scripts = script_counts(transcript)
    # Whisper base without the prompt: "مجھے روکلو چاہ مل چاہے" (all Arabic script).
    assert scripts["Arabic"] == 0, (scripts, transcript)
    assert scripts["Devanagari"] >= 0.9 * sum(scripts.values()), (scripts, transcript)
    # Whisper base hears a synthetic voice at the edge of its vocabulary: one run wrote
    # "मुझे", another "मुदे" for the first word (thread timing changes its sums). What
    # is tested is that the words said come back in Devanagari, so any of them counts.
    assert any(word in transcript for word in ("मुझे", "किलो", "चावल")), transcript


def test_a_bot_language_decides_a_one_second_clip(engine: WhisperEngine, tmp_path: Path) -> None:
    note = media_samples.voice_note("Obrigado.", "pt-br", tmp_path / "thanks.ogg")
    free = _transcribe(engine, note)
    hinted = _transcribe(engine, note, languages=("pt", "en"))
    assert hinted.language == "pt", hinted
    assert re.match(r"\[Voice note, 0:01, Portuguese(, unsure: \d+%)?\] ", hinted.text), hinted
    assert "obrigad" in hinted.text.lower(), hinted.text
    # Free detection of the same second is a guess (kept to show what the hint fixes).
    assert free.language not in DEAD_LANGUAGES, free
