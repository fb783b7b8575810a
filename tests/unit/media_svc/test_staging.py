"""Staged files are addressed only by validated UUID4s inside the staging directory."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import pytest

from services.common.errors import InvalidInputError
from services.media_svc.staging import StagingDirectory


@pytest.mark.parametrize(
    "bad",
    [
        "../etc/passwd",
        "/etc/passwd",
        "",
        "not-a-uuid",
        str(uuid.uuid1()),
        str(uuid.uuid4()).upper(),
        str(uuid.uuid4()) + "/..",
        "..",
        str(uuid.uuid4()) + ".part",
    ],
)
def test_rejects_anything_but_a_uuid4(tmp_path: Path, bad: str) -> None:
    staging = StagingDirectory(tmp_path / "staging")
    with pytest.raises(InvalidInputError):
        staging.path_for(bad)
    with pytest.raises(InvalidInputError):
        staging.delete(bad)


def test_paths_stay_inside_and_delete_is_idempotent(tmp_path: Path) -> None:
    staging = StagingDirectory(tmp_path / "staging")
    media_id = str(uuid.uuid4())
    path = staging.path_for(media_id)
    assert path.parent == (tmp_path / "staging").resolve()
    path.write_bytes(b"x")
    assert staging.exists(media_id)
    assert staging.delete(media_id)
    assert not staging.delete(media_id)


def test_entries_classify_files(tmp_path: Path) -> None:
    staging = StagingDirectory(tmp_path / "staging")
    media_id = str(uuid.uuid4())
    staging.path_for(media_id).write_bytes(b"x")
    (staging.root / f"{uuid.uuid4()}.part").write_bytes(b"y")
    (staging.root / "README").write_text("foreign")
    old = time.time() - 100
    os.utime(staging.path_for(media_id), (old, old))
    entries = {e.path.name: e for e in staging.entries()}
    assert entries[media_id].media_processing_id == media_id
    assert entries[media_id].age_seconds >= 99
    partial = next(e for e in entries.values() if e.partial)
    assert partial.media_processing_id is None
    assert entries["README"].media_processing_id is None and not entries["README"].partial
