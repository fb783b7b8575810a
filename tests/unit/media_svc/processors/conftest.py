"""Shared fixtures of the processor tests: the assembled Whisper model, loaded once per
test module (a load costs seconds; a job reuses the engine as a worker process does)."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.media_svc.models import assemble_whisper_base, models_dir
from tests.helpers.media_samples import espeak_available


@pytest.fixture(scope="session")
def whisper_model_dir() -> Path:
    """The model `make models` assembles; assembling is idempotent and instant when done."""
    return assemble_whisper_base(models_dir())


@pytest.fixture(scope="session", autouse=True)
def _require_espeak() -> None:
    if not espeak_available():
        pytest.fail("espeak-ng is missing: run `make apt` (scripts/apt-packages.txt lists it)")
