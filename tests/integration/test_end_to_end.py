"""The whole pipeline, Node server included, exactly as `make demo` runs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


# The demo transcribes and OCRs real media: on a loaded 2-core machine it takes longer than
# the suite's default 120 s; the subprocess timeout below is the real bound.
@pytest.mark.timeout(420)
def test_demo_pipeline_passes_all_its_checks(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "scripts/demo.py", "--work-dir", str(tmp_path / "demo")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "demo: all checks passed" in result.stdout
    assert "[FAILED]" not in result.stdout
