"""The local Debian bookworm base images the Dockerfiles build on (`make images`).

The public image registries are unreachable on the machines this runs on, while
deb.debian.org is not: each base is a minimal bookworm made with debootstrap, plus
Debian's Python 3.11 (the Python images) or the host's Node 20 binary and npm (Debian
bookworm ships Node 18 and NodeSource's repository is unreachable from a bootstrap; the
host's Node is the one the tests ran against). The root filesystem is cached as a tarball
under var/images/, named after a digest of its recipe, so a second run only imports it
(or nothing, when podman still holds the image).

    python scripts/image_bases.py [--cache DIR] python|node ...   (prints each image name)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from scripts.image_steps import REPO, log, run, step

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
NODE_MAJOR = "20"


@dataclass(frozen=True)
class Base:
    """One base image: the Debian packages on top of minbase, and what it is tagged."""

    role: str
    packages: tuple[str, ...]
    image: str
    # Image settings (ENV) given at import; not part of the root filesystem.
    env: tuple[tuple[str, str], ...] = ()

    def recipe(self) -> dict[str, object]:
        recipe: dict[str, object] = {
            "suite": SUITE,
            "mirror": MIRROR,
            "packages": list(self.packages),
        }
        if self.role == "node":
            recipe["node"] = host_node_version()
        return recipe

    def digest(self) -> str:
        """Names the root filesystem tarball."""
        return _digest(self.recipe())

    def tag(self) -> str:
        return f"{self.image}:{SUITE}-{_digest({**self.recipe(), 'env': self.env})}"


def _digest(recipe: dict[str, object]) -> str:
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]


# pip (its own certifi bundle) and Node (its compiled-in CAs) are pointed at the system
# bundle, as Debian's own tools use: the build mounts the host's bundle there, so a
# registry behind a TLS proxy the host trusts is reachable while building, and the
# images keep Debian's bundle.
SYSTEM_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
BASES = {
    # python-is-python3: the Dockerfile runs `python`, as the public python image allows.
    "python": Base(
        "python",
        ("ca-certificates", "python3.11", "python3.11-venv", "python-is-python3"),
        "localhost/chatbot-base-python",
        (("PIP_CERT", SYSTEM_CA_BUNDLE),),
    ),
    "node": Base(
        "node",
        ("ca-certificates",),
        "localhost/chatbot-base-node",
        (("NODE_EXTRA_CA_CERTS", SYSTEM_CA_BUNDLE),),
    ),
}


def host_node_version() -> str:
    node = shutil.which("node")
    if node is None:
        raise SystemExit("image_bases: the Node base copies the host's node, and none is on PATH")
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True)
    found = version.stdout.strip()
    if not found.startswith(f"v{NODE_MAJOR}."):
        raise SystemExit(f"image_bases: the host's node is {found}, Node {NODE_MAJOR} is needed")
    return found


def _host_npm() -> Path:
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("image_bases: the Node base copies the host's npm, and none is on PATH")
    # /usr/bin/npm → ../lib/node_modules/npm/bin/npm-cli.js
    return Path(npm).resolve().parents[1]


SOURCES = f"""deb {MIRROR} {SUITE} main
deb {MIRROR} {SUITE}-updates main
deb http://deb.debian.org/debian-security {SUITE}-security main
"""
# apt inside the new root, with /proc mounted in a private mount namespace (gone when
# the command ends): debootstrap's own --include resolves dependencies poorly and
# fails configuring python3.11-venv. The upgrade brings a cached minbase up to the
# current security updates.
_APT_IN_ROOT = (
    'set -e; mount --make-rprivate /; mount -t proc proc "$ROOT/proc"; '
    'export DEBIAN_FRONTEND=noninteractive; chroot "$ROOT" apt-get update -qq; '
    'chroot "$ROOT" apt-get upgrade -y -qq; '
    'chroot "$ROOT" apt-get install -y -qq --no-install-recommends "$@"; '
    'chroot "$ROOT" apt-get clean'
)


def _minbase(cache: Path) -> Path:
    """The minimal bookworm both bases start from, debootstrapped once."""
    tarball = cache / f"minbase-{SUITE}.tar"
    if tarball.exists():
        return tarball
    with tempfile.TemporaryDirectory(dir=cache, prefix="minbase-") as work:
        rootfs = Path(work) / "rootfs"
        with step(f"debootstrap a minimal {SUITE}"):
            run(["debootstrap", "--variant=minbase", SUITE, str(rootfs), MIRROR], quiet=True)
        partial = tarball.with_suffix(".tar.partial")
        run(["tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(partial), "."])
        partial.rename(tarball)
    return tarball


def _bootstrap(base: Base, rootfs: Path, cache: Path) -> None:
    rootfs.mkdir()
    run(["tar", "--numeric-owner", "-C", str(rootfs), "-xpf", str(_minbase(cache))])
    (rootfs / "etc/apt/sources.list").write_text(SOURCES)
    run(
        ["unshare", "--mount", "--fork", "sh", "-c", _APT_IN_ROOT, "sh", *base.packages],
        quiet=True,
        env={"ROOT": str(rootfs)},
    )
    if base.role == "node":
        node = shutil.which("node")
        assert node is not None
        shutil.copy2(node, rootfs / "usr/bin/node")
        shutil.copytree(_host_npm(), rootfs / "usr/lib/node_modules/npm", symlinks=True)
        for tool in ("npm", "npx"):
            (rootfs / "usr/bin" / tool).symlink_to(f"../lib/node_modules/npm/bin/{tool}-cli.js")
    # Package lists and caches only make the image larger.
    for directory in ("var/lib/apt/lists", "var/cache/apt/archives"):
        for entry in (rootfs / directory).glob("*"):
            if entry.is_file():
                entry.unlink()


def _image_exists(tag: str) -> bool:
    result = subprocess.run(["podman", "image", "exists", tag], check=False)
    return result.returncode == 0


def ensure(base: Base, cache: Path) -> str:
    """The base's image name, imported into podman; made only when its recipe changed."""
    tag = base.tag()
    if _image_exists(tag):
        log(f"base {base.role}: {tag} already in podman")
        return tag
    tarball = cache / f"base-{base.role}-{base.digest()}.tar"
    if not tarball.exists():
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cache, prefix=f"rootfs-{base.role}-") as work:
            rootfs = Path(work) / "rootfs"
            with step(f"the {base.role} base: {', '.join(base.packages)}"):
                _bootstrap(base, rootfs, cache)
            partial = tarball.with_suffix(".tar.partial")
            with step(f"tar the {base.role} root filesystem"):
                run(["tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(partial), "."])
            partial.rename(tarball)
    with step(f"podman import {tarball.name} as {tag}"):
        run(
            [
                "podman",
                "import",
                "--change",
                'CMD ["/bin/bash"]',
                "--change",
                "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                *(f"--change=ENV {name}={value}" for name, value in base.env),
                str(tarball),
                tag,
            ],
            quiet=True,
        )
    return tag


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("roles", nargs="+", choices=sorted(BASES))
    parser.add_argument("--cache", type=Path, default=REPO / "var" / "images")
    args = parser.parse_args(argv)
    for role in args.roles:
        print(ensure(BASES[role], args.cache))
    return 0


if __name__ == "__main__":
    sys.exit(main())
