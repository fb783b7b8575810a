"""Prints the pinned requirements of one image role, read from pyproject.toml.

The gateway, queue_svc and relay images carry only the light runtime libraries; the
media_svc (processor) image carries every dependency, engines and models included.
The versions come from pyproject.toml's `dependencies`, so an image never drifts from
what the tests ran against.

    python scripts/image_requirements.py light|processor [--pyproject PATH]
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path

# The distributions the light services import; everything else in `dependencies` is a
# media engine, its model or a library only processors use.
LIGHT = frozenset(
    {
        "grpcio",
        "grpcio-health-checking",
        "grpcio-reflection",
        "protobuf",
        "pymongo",
        "prometheus-client",
        "aiohttp",
        # The gateway's request and response models (services/gateway/api_models.py).
        "pydantic",
        # The gateway's operator console renders Jinja2 templates.
        "jinja2",
        # The gateway renders a pairing QR as PNG (services/gateway/pairing_api.py).
        "segno",
    }
)
ROLES = ("light", "processor")
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def distribution_name(requirement: str) -> str:
    """`Foo_Bar[x]==1.0` → `foo-bar` (PEP 503 normalized)."""
    match = _NAME.match(requirement)
    if match is None:
        raise ValueError(f"not a requirement: {requirement!r}")
    return re.sub(r"[-_.]+", "-", match[1]).lower()


def requirements(role: str, pyproject: Path) -> list[str]:
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    dependencies: list[str] = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    if role == "processor":
        return list(dependencies)
    chosen = [d for d in dependencies if distribution_name(d) in LIGHT]
    missing = LIGHT - {distribution_name(d) for d in chosen}
    if missing:
        raise ValueError(f"pyproject.toml no longer lists {', '.join(sorted(missing))}")
    return chosen


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("role", choices=ROLES)
    parser.add_argument(
        "--pyproject", type=Path, default=Path(__file__).resolve().parents[1] / "pyproject.toml"
    )
    args = parser.parse_args(argv)
    try:
        print("\n".join(requirements(args.role, args.pyproject)))
    except (ValueError, OSError, KeyError) as error:
        print(f"image_requirements: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
