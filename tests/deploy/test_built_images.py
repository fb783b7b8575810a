"""The built images work: each one, mounted read-only, runs its entrypoint's import and
configuration check under chroot with the production ConfigMap's settings, the Node
image imports every module of the server, and the media-svc image transcribes a clip
with the Whisper model it carries (scripts/images.py).

Building takes minutes and needs root, podman and debootstrap, so `make test` never
builds: an image that is not built here skips its test, naming the command that builds
it (`make images`)."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from scripts.images import CLIP_WORDS, IMAGES, SmokeCheckError, image_tag, smoke


def _built(name: str) -> bool:
    result = subprocess.run(["podman", "image", "exists", name], check=False, timeout=60)
    return result.returncode == 0


@pytest.mark.timeout(900)
@pytest.mark.parametrize("role", list(IMAGES))
def test_built_image_passes_its_smoke_check(role: str) -> None:
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed: `make images` installs it and builds the images")
    if os.geteuid() != 0:
        pytest.skip("mounting an image and chroot need root")
    image = IMAGES[role]
    if not _built(image.name(image_tag())):
        pytest.skip(f"{image.name(image_tag())} is not built: run `make images`")
    output = smoke(image, image_tag())
    expected = "configuration ok"
    assert f"{role.replace('-', '_') if image.base == 'python' else role}: {expected}" in output
    if role == "media-svc":
        assert all(word in output.lower() for word in CLIP_WORDS), output


def test_a_broken_configuration_fails_the_smoke_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """The check is not a formality: a bad setting in the image's environment fails it."""
    if shutil.which("podman") is None or os.geteuid() != 0:
        pytest.skip("needs podman and root (`make images`)")
    image = IMAGES["queue-svc"]
    if not _built(image.name(image_tag())):
        pytest.skip(f"{image.name(image_tag())} is not built: run `make images`")
    monkeypatch.setattr(
        "scripts.images.production_env", lambda _image: {"QUEUE_SVC_PORT": "not-a-port"}
    )
    with pytest.raises(SmokeCheckError, match="QUEUE_SVC_PORT"):
        smoke(image, image_tag())
