"""`make images`: builds every role's image with podman on the local bookworm bases, then
smoke-tests each one without running a container.

Containers cannot run on the machines this is made for, builds can: podman builds with
`--isolation chroot` (RUN steps in a chroot, no runtime, no cgroups) and `--network host`
(pip and npm reach their registries as the host does). The smoke test mounts each built
image read-only (`podman image mount`) and, in a private mount namespace with /proc, /dev
and a scratch /tmp mounted into it, runs the image's entrypoint under chroot as the image's
user: the Python services with `--check` (every module imported, the production
configuration parsed), the Node server with an import of every module and its config
check, and the media-svc image transcribes a short espeak-ng clip with the Whisper model
it carries.

    python -m scripts.images build [ROLE ...]
    python -m scripts.images smoke [ROLE ...]
    python -m scripts.images all   [ROLE ...]     (build, then smoke)

Run as root (debootstrap and rootful podman). Environment: IMAGES_CACHE_DIR (default
var/images: the base root filesystems), IMAGES_TAG (default 0.1.0).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml

from scripts import image_bases
from scripts.image_steps import REPO, log, run, step

# A sentence the smoke transcription must find; Whisper base hears espeak-ng's English
# voice well enough for every word of it.
CLIP_SENTENCE = "Please call me back tomorrow morning."
CLIP_WORDS = ("call", "back", "tomorrow")


class SmokeCheckError(Exception):
    """A built image failed its smoke check; the message carries its output."""


@dataclass(frozen=True)
class Image:
    """One role's image: its Dockerfile, target, base, and how to smoke-test it."""

    role: str
    dockerfile: str
    target: str | None
    base: str
    # The build argument that names the base image in the Dockerfile.
    base_arg: str
    # The workload in deploy/k8s/base/<manifest> whose pod environment the check parses.
    manifest: str
    workload: str

    def name(self, tag: str) -> str:
        return f"localhost/chatbot/{self.role}:{tag}"


IMAGES = {
    image.role: image
    for image in (
        Image(
            "gateway",
            "python.Dockerfile",
            "gateway",
            "python",
            "PYTHON_IMAGE",
            "gateway.yaml",
            "gateway",
        ),
        Image(
            "queue-svc",
            "python.Dockerfile",
            "queue-svc",
            "python",
            "PYTHON_IMAGE",
            "queue-svc.yaml",
            "queue-svc",
        ),
        Image(
            "relay",
            "python.Dockerfile",
            "relay",
            "python",
            "PYTHON_IMAGE",
            "relay.yaml",
            "relay",
        ),
        # The speech role: the one whose pools load the Whisper model.
        Image(
            "media-svc",
            "python.Dockerfile",
            "media-svc",
            "python",
            "PYTHON_IMAGE",
            "media-svc.yaml",
            "media-svc-speech",
        ),
        Image(
            "whatsapp-baileys-server",
            "node.Dockerfile",
            None,
            "node",
            "NODE_IMAGE",
            "whatsapp-baileys-server.yaml",
            "whatsapp-baileys-server",
        ),
    )
}

# Secrets the pods read from their Secret; placeholders suffice, --check opens nothing.
SMOKE_SECRETS = {
    "MONGODB_URI": "mongodb://smoke@mongodb-0.mongodb:27017/?replicaSet=rs0",
    "GATEWAY_TOKEN": "smoke-gateway-token-" + "g" * 24,
    "GATEWAY_API_TOKEN": "smoke-api-token-" + "a" * 28,
    "NODE_API_TOKEN": "smoke-node-token-" + "n" * 27,
    "RELAY_GATEWAY_API_TOKEN": "smoke-api-token-" + "a" * 28,
}

# Imports every module of the Node server (index.js imports them all; its start is
# guarded by a main-module check) and parses the configuration the pod would get.
NODE_CHECK = """
const { readdirSync } = await import("node:fs");
for (const file of readdirSync("/app/src").filter((f) => f.endsWith(".js"))) {
  await import(`/app/src/${file}`);
}
const { loadConfig } = await import("/app/src/config.js");
loadConfig(process.env);
console.error("whatsapp-baileys-server: configuration ok");
"""

# The media-svc check: the audio processor as a worker process runs it, on the model the
# image carries (MEDIA_MODELS_DIR), over a clip copied into /tmp.
TRANSCRIBE = """
import sys
from pathlib import Path
from services.media_svc.processors.audio import AudioProcessor
from services.media_svc.processors.base import ProcessingSuccess
from services.media_svc.processors.contract import ProcessorInput
options = AudioProcessor.parse_options({})
engine = AudioProcessor.load_engine(options)
clip = Path(sys.argv[1])
item = ProcessorInput(
    media_kind="MEDIA_KIND_VOICE_NOTE", mime="audio/wav", path=clip, size=clip.stat().st_size
)
outcome = AudioProcessor.process(engine, options, item)
if not isinstance(outcome, ProcessingSuccess):
    sys.exit(f"media-svc: transcription failed: {outcome}")
print(outcome.text)
"""


def cache_dir() -> Path:
    text = os.environ.get("IMAGES_CACHE_DIR", "").strip()
    return Path(text) if text else REPO / "var" / "images"


def image_tag() -> str:
    return os.environ.get("IMAGES_TAG", "").strip() or "0.1.0"


def _require(tool: str) -> None:
    if shutil.which(tool) is None:
        raise SystemExit(f"images: {tool} is not installed (make images installs it)")


def build(images: Sequence[Image], tag: str) -> None:
    _require("podman")
    _require("debootstrap")
    bases = {
        role: image_bases.ensure(image_bases.BASES[role], cache_dir())
        for role in sorted({image.base for image in images})
    }
    for image in images:
        command = [
            "podman",
            "build",
            "--isolation",
            "chroot",
            "--network",
            "host",
            "--layers",
            # Build time only: the host's CA bundle for pip and npm (image_bases.py).
            "--volume",
            f"{image_bases.SYSTEM_CA_BUNDLE}:{image_bases.SYSTEM_CA_BUNDLE}:ro",
            "--file",
            str(REPO / "deploy" / "docker" / image.dockerfile),
            "--build-arg",
            f"{image.base_arg}={bases[image.base]}",
            "--tag",
            image.name(tag),
        ]
        if image.target is not None:
            command += ["--target", image.target]
        with step(f"podman build {image.name(tag)}"):
            run([*command, str(REPO)])


@dataclass(frozen=True)
class ImageConfig:
    """What a container of the image would start with."""

    env: dict[str, str]
    user: str
    workdir: str
    command: list[str]


def inspect(name: str) -> ImageConfig:
    result = subprocess.run(
        ["podman", "image", "inspect", name], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise SmokeCheckError(f"{name} is not built (run make images): {result.stderr.strip()}")
    config = json.loads(result.stdout)[0]["Config"]
    env = dict(str(e).split("=", 1) for e in config.get("Env") or [])
    return ImageConfig(
        env={str(k): str(v) for k, v in env.items()},
        user=str(config.get("User") or "0:0"),
        workdir=str(config.get("WorkingDir") or "/"),
        command=[str(part) for part in config.get("Cmd") or []],
    )


def production_env(image: Image) -> dict[str, str]:
    """The environment the image's pod gets from the base manifests: the shared
    ConfigMap, then the container's own variables, with placeholder secrets and the
    first pod's name for field references (Kubernetes' `$(VAR)` expanded)."""
    base = REPO / "deploy" / "k8s" / "base"
    config = yaml.safe_load((base / "config.yaml").read_text())
    env = {str(k): str(v) for k, v in config["data"].items()}
    pod = f"{image.workload}-0"
    env["HOSTNAME"] = pod
    [workload] = [
        d
        for d in yaml.safe_load_all((base / image.manifest).read_text())
        if d["kind"] in {"Deployment", "StatefulSet"} and d["metadata"]["name"] == image.workload
    ]
    [container] = workload["spec"]["template"]["spec"]["containers"]
    for variable in container.get("env", []):
        name = str(variable["name"])
        source = variable.get("valueFrom", {})
        if "secretKeyRef" in source:
            env[name] = SMOKE_SECRETS[source["secretKeyRef"]["key"]]
        elif "fieldRef" in source:
            env[name] = pod
        else:
            env[name] = re.sub(
                r"\$\(([A-Z0-9_]+)\)", lambda m: env.get(m[1], m[0]), str(variable["value"])
            )
    return env


@contextmanager
def mounted(name: str) -> Iterator[Path]:
    """The image's root filesystem, mounted read-only for the duration."""
    result = subprocess.run(
        ["podman", "image", "mount", name], capture_output=True, text=True, check=True
    )
    try:
        yield Path(result.stdout.strip())
    finally:
        subprocess.run(["podman", "image", "unmount", name], capture_output=True, check=False)


def run_in_image(
    name: str,
    command: Sequence[str],
    env: Mapping[str, str],
    files: Sequence[Path] = (),
    timeout: float = 600,
) -> str:
    """Runs `command` under chroot in the mounted image as its user, in its work
    directory, with its environment plus `env`; `files` are copied into its /tmp first.
    Returns the standard output; raises with the output when the command fails."""
    config = inspect(name)
    with mounted(name) as root:
        # Inside the private mount namespace only: the mounts vanish with it.
        script = (
            "set -e; mount --make-rprivate /; "
            'mount --rbind /dev "$ROOT/dev"; mount -t proc proc "$ROOT/proc"; '
            'mount -t tmpfs -o mode=1777 tmpfs "$ROOT/tmp"; '
            'for f in "$@"; do [ "$f" = -- ] && break; cp "$f" "$ROOT/tmp/"; shift; done; shift; '
            'exec chroot --userspec="$USERSPEC" "$ROOT" "$@"'
        )
        full_env = {**config.env, **env}
        inner = [
            "/usr/bin/env",
            "-i",
            "-C",
            config.workdir,
            *(f"{k}={v}" for k, v in sorted(full_env.items())),
            *command,
        ]
        result = subprocess.run(
            [
                "unshare",
                "--mount",
                "--fork",
                "sh",
                "-c",
                script,
                "sh",
                *map(str, files),
                "--",
                *inner,
            ],
            env={**os.environ, "ROOT": str(root), "USERSPEC": config.user},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    if result.returncode != 0:
        raise SmokeCheckError(
            f"{name}: {' '.join(command[:3])} exited {result.returncode}\n"
            f"{result.stdout[-4000:]}{result.stderr[-4000:]}"
        )
    return result.stdout + result.stderr


def speech_clip(directory: Path) -> Path:
    """A short English sentence spoken by espeak-ng on the host, as 16 kHz WAV."""
    _require("espeak-ng")
    clip = directory / "smoke-clip.wav"
    run(["espeak-ng", "-v", "en", "-w", str(clip), CLIP_SENTENCE], quiet=True)
    return clip


def smoke(image: Image, tag: str) -> str:
    """Runs the image's checks; returns what they printed."""
    name = image.name(tag)
    env = production_env(image)
    if image.base == "node":
        return run_in_image(name, ["node", "--input-type=module", "-e", NODE_CHECK], env)
    output = run_in_image(name, [*inspect(name).command, "--check"], env)
    if image.role == "media-svc":
        with tempfile.TemporaryDirectory() as scratch:
            clip = speech_clip(Path(scratch))
            os.chmod(clip, 0o644)
            transcript = run_in_image(
                name, ["python", "-c", TRANSCRIBE, f"/tmp/{clip.name}"], env, files=[clip]
            )
        missing = [w for w in CLIP_WORDS if w not in transcript.lower()]
        if missing:
            raise SmokeCheckError(f"{name}: transcript lacks {missing}: {transcript!r}")
        output += transcript
    return output


def smoke_all(images: Sequence[Image], tag: str) -> None:
    _require("podman")
    for image in images:
        with step(f"smoke {image.name(tag)}"):
            started = time.monotonic()
            output = smoke(image, tag)
            for line in output.strip().splitlines()[-3:]:
                log(f"  {image.role}: {line}")
            log(f"  {image.role}: ok ({time.monotonic() - started:.1f} s)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("build", "smoke", "all"))
    parser.add_argument("roles", nargs="*", metavar="ROLE", help=", ".join(IMAGES))
    args = parser.parse_args(argv)
    unknown = sorted(set(args.roles) - set(IMAGES))
    if unknown:
        parser.error(f"unknown role(s) {', '.join(unknown)}; roles: {', '.join(IMAGES)}")
    images = [IMAGES[role] for role in (args.roles or IMAGES)]
    tag = image_tag()
    started = time.monotonic()
    try:
        if args.action in {"build", "all"}:
            build(images, tag)
        if args.action in {"smoke", "all"}:
            smoke_all(images, tag)
    except (subprocess.CalledProcessError, SmokeCheckError) as error:
        log(f"failed: {error}")
        return 1
    log(f"{args.action}: {len(images)} image(s) in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
