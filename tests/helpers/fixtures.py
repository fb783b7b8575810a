"""Access to the golden wire fixtures shared with the Node tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "wire"


def load_fixtures(kind: str) -> list[tuple[str, dict[str, Any]]]:
    """(name, fixture) for every file of `valid` or `invalid`, sorted by name."""
    return [
        (path.stem, json.loads(path.read_text()))
        for path in sorted((FIXTURES / kind).glob("*.json"))
    ]


def frame_text(fixture: dict[str, Any]) -> str:
    """The exact bytes a peer would send for this fixture."""
    if "raw" in fixture:
        return str(fixture["raw"])
    return json.dumps(fixture["frame"])
