"""Assembling the packaged Whisper model: joined once, verified, atomic, idempotent."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from services.common.errors import InvalidInputError
from services.media_svc import models
from services.media_svc.models import (
    WHISPER_BASE_MODEL_BYTES,
    assemble_whisper_base,
    is_assembled,
    model_path,
    models_dir,
)

REPO = Path(__file__).resolve().parents[3]


def test_assembles_the_model_from_the_two_packages_then_does_nothing(tmp_path: Path) -> None:
    messages: list[str] = []
    target = assemble_whisper_base(tmp_path, progress=messages.append)
    assert target == tmp_path / "whisper-base"
    assert (target / "model.bin").stat().st_size == WHISPER_BASE_MODEL_BYTES
    assert sorted(path.name for path in target.iterdir()) == [
        "config.json",
        "model.bin",
        "tokenizer.json",
        "vocabulary.txt",
    ]
    assert messages[-1].endswith("assembled (145,217,532 bytes)")
    assert "joining model.bin: 100%" in messages
    written = (target / "model.bin").stat().st_mtime_ns

    again: list[str] = []
    assemble_whisper_base(tmp_path, progress=again.append)
    assert again == [f"{target}: already assembled"]
    assert (target / "model.bin").stat().st_mtime_ns == written


def test_a_partial_model_is_replaced(tmp_path: Path) -> None:
    target = tmp_path / "whisper-base"
    target.mkdir()
    (target / "model.bin").write_bytes(b"partial")
    assert not is_assembled(target)
    assemble_whisper_base(tmp_path)
    assert is_assembled(target)
    assert not [path for path in target.iterdir() if path.name.startswith(".")]


def test_wrong_part_sizes_fail_clearly_and_write_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(models, "WHISPER_BASE_MODEL_BYTES", WHISPER_BASE_MODEL_BYTES + 1)
    with pytest.raises(models.ModelAssemblyError, match="expected 145,217,533"):
        assemble_whisper_base(tmp_path)
    assert not (tmp_path / "whisper-base").exists()


def test_models_directory_from_the_environment(tmp_path: Path) -> None:
    assert models_dir({"MEDIA_MODELS_DIR": str(tmp_path)}) == tmp_path
    assert models_dir({}) == REPO / "var" / "models"
    assert model_path("whisper-base", tmp_path) == tmp_path / "whisper-base"
    for bad in ("", "..", "a/b", "..\\x"):
        with pytest.raises(InvalidInputError, match="plain directory name"):
            model_path(bad, tmp_path)


def test_command_line_assembles_into_the_given_directory(tmp_path: Path) -> None:
    env = {**os.environ, "MEDIA_MODELS_DIR": str(tmp_path / "unused")}
    done = subprocess.run(
        [sys.executable, "-m", "services.media_svc.models", "assemble", "--dir", str(tmp_path)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert is_assembled(tmp_path / "whisper-base")
    assert "assembled (145,217,532 bytes)" in done.stderr
    assert not (tmp_path / "unused").exists()
