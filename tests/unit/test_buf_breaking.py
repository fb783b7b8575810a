"""`make lint`'s breaking-change check (scripts/buf-breaking.sh) compares with the last
released contract, not with the branch itself: in a throw-away copy of the repository,
deleting a field fails it, the unchanged contract passes, and a `v*` tag wins over
protos/RELEASED."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUF = REPO / "node_modules" / ".bin" / "buf"
FIELD = re.compile(r"^\s+bool is_bot = 3;\n", re.MULTILINE)
CONTEXT = Path("protos/chatbot/common/v1/context.proto")


def _git(repo: Path, *args: str) -> str:
    identity = ["-c", "user.name=test", "-c", "user.email=test@example.invalid"]
    done = subprocess.run(
        ["git", *identity, *args], cwd=repo, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def _check(repo: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["scripts/buf-breaking.sh"],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"PATH": "/usr/bin:/bin", "BUF": str(BUF), "HOME": str(repo)},
    )


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    if not BUF.exists():
        pytest.fail("buf is not installed: run `make npm`")
    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copytree(REPO / "protos", repo / "protos")
    shutil.copy(REPO / "buf.yaml", repo / "buf.yaml")
    (repo / "scripts").mkdir()
    shutil.copy(REPO / "scripts" / "buf-breaking.sh", repo / "scripts" / "buf-breaking.sh")
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "release")
    released = _git(repo, "rev-parse", "HEAD")
    (repo / "protos" / "RELEASED").write_text(f"# the last release\n{released}\n")
    _git(repo, "commit", "-q", "-am", "record the release")
    return repo


def _delete_a_field(repo: Path) -> None:
    path = repo / CONTEXT
    text, count = FIELD.subn("", path.read_text())
    assert count == 1, f"{CONTEXT} no longer has the field this test deletes"
    path.write_text(text)


def test_an_unchanged_contract_passes(copy: Path) -> None:
    result = _check(copy)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_deleted_field_fails_against_the_recorded_release(copy: Path) -> None:
    _delete_a_field(copy)
    _git(copy, "commit", "-q", "-am", "break the contract")  # even once committed
    result = _check(copy)
    assert result.returncode != 0
    assert "is_bot" in result.stdout + result.stderr and "deleted" in result.stdout


def test_the_newest_v_tag_is_the_reference_when_there_is_one(copy: Path) -> None:
    _delete_a_field(copy)
    _git(copy, "commit", "-q", "-am", "v2 of the contract, released")
    _git(copy, "tag", "v0.2.0")
    assert _check(copy).returncode == 0
    _git(copy, "tag", "v0.10.0", "HEAD~1")  # newer by version order, holds the field
    assert _check(copy).returncode != 0


def test_a_release_this_checkout_does_not_hold_is_an_error(copy: Path) -> None:
    (copy / "protos" / "RELEASED").write_text("0" * 40 + "\n")
    result = _check(copy)
    assert result.returncode == 1
    assert "no released commit" in result.stderr
