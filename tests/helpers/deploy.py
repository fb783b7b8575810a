"""The deployment checks' tools and rendered manifests (tests/deploy/).

The tools live in .venv-tools (`make tools`, scripts/deploy-tools.txt) and promtool in
Debian's `prometheus` package (`make apt`); a missing one fails the test with the
command that installs it, never skips it.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
OVERLAYS = ("dev", "production", "production-hpa")
TOOLS_BIN = REPO / ".venv-tools" / "bin"


def tool(name: str) -> Path:
    """A tool of .venv-tools, or promtool from PATH."""
    path = TOOLS_BIN / name
    if path.exists():
        return path
    found = shutil.which(name) if name == "promtool" else None
    if found is None:
        where = "make apt (Debian package prometheus)" if name == "promtool" else "make tools"
        pytest.fail(f"{name} is not installed; run `{where}`")
    return Path(found)


def run(
    command: Sequence[str | Path], timeout: float = 100, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(part) for part in command],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=REPO,
        env=None if env is None else dict(env),
    )


def render(overlay: str, out_dir: Path) -> Path:
    """`kubectl kustomize` of one overlay into out_dir/<overlay>.yaml."""
    result = run([tool("kubectl"), "kustomize", K8S / "overlays" / overlay])
    assert result.returncode == 0, f"kustomize {overlay} failed:\n{result.stderr}"
    path = out_dir / f"{overlay}.yaml"
    path.write_text(result.stdout)
    return path


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def named(docs: Sequence[Mapping[str, Any]], kind: str, name: str) -> Mapping[str, Any]:
    matches = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]
