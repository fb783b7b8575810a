"""Progress output and timings shared by the image scripts (`make images`)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def log(message: str) -> None:
    print(f"[images] {message}", file=sys.stderr, flush=True)


@contextmanager
def step(title: str) -> Iterator[None]:
    """Logs the start of a step and, at its end, how long it took."""
    log(f"{title} ...")
    started = time.monotonic()
    yield
    log(f"{title}: done in {time.monotonic() - started:.1f} s")


def run(
    command: Sequence[str],
    *,
    quiet: bool = False,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> None:
    """Runs a command (`env` added to this process's environment); a quiet one's output
    is shown only when it fails."""
    full_env = None if env is None else {**os.environ, **env}
    if not quiet:
        subprocess.run(command, check=True, cwd=cwd, env=full_env)
        return
    result = subprocess.run(
        command,
        check=False,
        cwd=cwd,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    if result.returncode != 0:
        sys.stderr.write(result.stdout[-8000:])
        raise subprocess.CalledProcessError(result.returncode, list(command))
