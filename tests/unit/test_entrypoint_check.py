"""`python -m services.<name> --check`: every service loads its modules and parses its
environment, then exits without opening anything (the image smoke test runs it inside
each built image); a bad environment still exits 2 with the reason."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.helpers.deploy import REPO

SERVICES = ("gateway", "queue_svc", "relay", "media_svc")
# The gateway refuses to start without its two tokens; the others have defaults for all.
TOKENS = {"GATEWAY_TOKEN": "n" * 40, "GATEWAY_API_TOKEN": "a" * 40}


def _check(service: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {"PATH": os.environ["PATH"], "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
    return subprocess.run(
        [sys.executable, "-m", f"services.{service}", "--check"],
        cwd=REPO,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("service", SERVICES)
def test_check_parses_the_configuration_and_exits(service: str) -> None:
    result = _check(service, TOKENS)
    assert result.returncode == 0, result.stderr
    assert f"{service}: configuration ok" in result.stderr


def test_check_reports_a_bad_configuration() -> None:
    result = _check("gateway", {})
    assert result.returncode == 2
    assert "gateway: configuration error: GATEWAY_TOKEN" in result.stderr
    bad_port = _check("queue_svc", {"QUEUE_SVC_PORT": "not-a-port"})
    assert bad_port.returncode == 2, bad_port.stderr


def test_check_reports_an_unknown_event_loop() -> None:
    result = _check("queue_svc", {"EVENT_LOOP": "trio"})
    assert result.returncode == 2
    assert "queue_svc: configuration error: EVENT_LOOP: 'trio'" in result.stderr
    for choice in ("asyncio", "uvloop"):
        assert _check("queue_svc", {"EVENT_LOOP": choice}).returncode == 0
