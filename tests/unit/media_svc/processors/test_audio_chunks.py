"""Long audio transcribed chunk by chunk (AudioProcessor + audio_chunks): real espeak-ng
speech through the real Whisper base model, one `process` call per chunk as the worker
runs them, each resumed from the checkpoint the one before it returned."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from services.common.errors import InvalidInputError
from services.media_svc.engines.whisper import WhisperEngine
from services.media_svc.processors.audio import AudioProcessor
from services.media_svc.processors.audio_chunks import SAMPLE_RATE, AudioProgress, chunk_end
from services.media_svc.processors.base import (
    ProcessingOutcome,
    ProcessingProgress,
    ProcessingSuccess,
)
from services.media_svc.processors.contract import ProcessorInput
from services.media_svc.processors.languages import LanguageChoice
from services.media_svc.processors.speech_options import (
    AUDIO_CHUNK_ENV,
    DEFAULT_CHUNK_SECONDS,
    chunk_seconds,
)
from tests.helpers import media_samples

# One keyword per sentence, in the order spoken.
SENTENCES = (
    ("The first topic is the red bicycle in the garden.", "bicycle"),
    ("Next we talk about the blue umbrella near the station.", "umbrella"),
    ("Then there is the green lantern on the old bridge.", "lantern"),
    ("After that comes the grey elephant at the city zoo.", "elephant"),
    ("Finally we mention the purple mountain far away.", "mountain"),
    ("Thank you for listening and goodbye.", "goodbye"),
)


@pytest.fixture(scope="module")
def engine(whisper_model_dir: Path) -> WhisperEngine:
    return AudioProcessor.load_engine(AudioProcessor.parse_options({}))


@pytest.fixture(scope="module")
def long_note(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About 30 s: six sentences, a second and a half of silence after each."""
    directory = tmp_path_factory.mktemp("long-note")
    gap = media_samples.silence(1.5)
    parts: list[Any] = []
    for n, (sentence, _) in enumerate(SENTENCES):
        wav = media_samples.speak(sentence, "en", directory / f"s{n}.wav")
        parts += [media_samples.read_mono(wav), gap]
    return media_samples.write_voice_note(np.concatenate(parts), directory / "long.ogg")


def _item(path: Path, checkpoint: str | None = None) -> ProcessorInput:
    return ProcessorInput(
        media_kind="MEDIA_KIND_VOICE_NOTE",
        mime="audio/ogg",
        path=path,
        size=path.stat().st_size,
        checkpoint=checkpoint,
    )


def _run_to_the_end(
    engine: WhisperEngine, path: Path, raw: dict[str, Any], checkpoint: str | None = None
) -> tuple[list[ProcessingProgress], ProcessingOutcome]:
    options = AudioProcessor.parse_options(raw)
    parts: list[ProcessingProgress] = []
    outcome = AudioProcessor.process(engine, options, _item(path, checkpoint))
    while isinstance(outcome, ProcessingProgress):
        parts.append(outcome)
        assert len(parts) < 20, "the chunks never end"
        outcome = AudioProcessor.process(engine, options, _item(path, outcome.checkpoint))
    return parts, outcome


def _positions(text: str) -> list[int]:
    lowered = text.lower()
    for _, word in SENTENCES:
        assert lowered.count(word) == 1, (word, text)
    return [lowered.index(word) for _, word in SENTENCES]


def test_a_long_note_is_transcribed_in_chunks_joined_in_order(
    engine: WhisperEngine, long_note: Path
) -> None:
    parts, outcome = _run_to_the_end(engine, long_note, {"chunk_seconds": 10})
    assert isinstance(outcome, ProcessingSuccess), outcome
    assert len(parts) >= 2, parts
    left = [part.remaining for part in parts]
    assert left == sorted(left, reverse=True) and all(0 < share < 1 for share in left)
    # One header, one language for the whole note, every sentence once and in order.
    assert re.match(r"\[Voice note, 0:[23]\d, English\] ", outcome.text), outcome.text
    assert outcome.text.count("[") == 1, outcome.text
    assert outcome.language == "en"
    positions = _positions(outcome.text)
    assert positions == sorted(positions), outcome.text
    saved = [json.loads(part.checkpoint) for part in parts]
    assert [len(doc["texts"]) for doc in saved] == list(range(1, len(parts) + 1))
    assert all(doc["language"]["code"] == "en" for doc in saved)


def test_a_run_resumed_from_a_checkpoint_ends_with_the_same_text(
    engine: WhisperEngine, long_note: Path
) -> None:
    """A crash after a checkpoint: another process resumes from it, and what the chunks
    before it said enters the text once, as the uninterrupted run had it."""
    parts, straight = _run_to_the_end(engine, long_note, {"chunk_seconds": 10})
    _, resumed = _run_to_the_end(engine, long_note, {"chunk_seconds": 10}, parts[0].checkpoint)
    assert isinstance(straight, ProcessingSuccess) and isinstance(resumed, ProcessingSuccess)
    assert resumed.text == straight.text


def test_short_notes_and_chunking_off_run_in_one_go(engine: WhisperEngine, long_note: Path) -> None:
    parts, whole = _run_to_the_end(engine, long_note, {"chunk_seconds": 0})
    assert parts == [] and isinstance(whole, ProcessingSuccess)
    _positions(whole.text)
    parts, default = _run_to_the_end(engine, long_note, {})
    # About 30 s is within a quarter chunk of the 30 s default: one run, no checkpoint.
    assert parts == [] and isinstance(default, ProcessingSuccess)


def _noise(seconds: float, seed: int) -> np.ndarray[Any, np.dtype[np.float32]]:
    rng = np.random.default_rng(seed)
    return rng.uniform(-0.5, 0.5, int(seconds * SAMPLE_RATE)).astype(np.float32)


def test_a_chunk_ends_in_the_pause_before_its_window_closes() -> None:
    pause = np.zeros(int(0.3 * SAMPLE_RATE), dtype=np.float32)
    samples = np.concatenate([_noise(8.5, 1), pause, _noise(20, 2)])
    end = chunk_end(samples, 0, 10.0)
    assert int(8.5 * SAMPLE_RATE) <= end <= int(8.8 * SAMPLE_RATE)
    assert chunk_end(samples, 0, 10.0) == end  # the same samples, the same cut
    # A tail under a quarter chunk joins the last chunk.
    assert chunk_end(samples, len(samples) - 12 * SAMPLE_RATE, 10.0) == len(samples)


def test_a_checkpoint_of_another_clip_or_a_damaged_one_starts_over() -> None:
    english = LanguageChoice("en", 0.9, "en", 0.9)
    progress = AudioProgress(16_000, 48_000, ("hello",), english)
    assert AudioProgress.resume(progress.to_json(), 48_000) == progress
    fresh = AudioProgress(0, 64_000, (), None)
    assert AudioProgress.resume(progress.to_json(), 64_000) == fresh
    for damaged in ("{", '{"kind": "pdf_pages"}', '{"kind": "audio_chunks", "version": 99}'):
        assert AudioProgress.resume(damaged, 64_000) == fresh
    beyond = AudioProgress(70_000, 64_000, ("x",), None).to_json()
    assert AudioProgress.resume(beyond, 64_000) == fresh


def test_chunk_seconds_comes_from_the_option_else_the_environment() -> None:
    assert chunk_seconds({}, {}) == DEFAULT_CHUNK_SECONDS
    assert chunk_seconds({}, {AUDIO_CHUNK_ENV: "45"}) == 45.0
    assert chunk_seconds({"chunk_seconds": 0}, {AUDIO_CHUNK_ENV: "45"}) == 0.0
    for raw, env in (
        ({"chunk_seconds": 5}, {}),
        ({"chunk_seconds": "30"}, {}),
        ({}, {AUDIO_CHUNK_ENV: "soon"}),
        ({}, {AUDIO_CHUNK_ENV: "nan"}),
        ({}, {AUDIO_CHUNK_ENV: "4000"}),
    ):
        with pytest.raises(InvalidInputError, match="chunk_seconds|" + AUDIO_CHUNK_ENV):
            chunk_seconds(raw, env)
    with pytest.raises(InvalidInputError, match="chunk_seconds"):
        AudioProcessor.parse_options({"chunk_seconds": -1})
