from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.helpers.deploy import OVERLAYS, documents, render


@pytest.fixture(scope="session")
def rendered_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every overlay rendered once per session, one file each."""
    out = tmp_path_factory.mktemp("rendered")
    for overlay in OVERLAYS:
        render(overlay, out)
    return out


@pytest.fixture(scope="session")
def rendered(rendered_dir: Path) -> dict[str, list[dict[str, Any]]]:
    return {overlay: documents(rendered_dir / f"{overlay}.yaml") for overlay in OVERLAYS}
