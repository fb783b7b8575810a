"""The operator CLI refuses bad ids before any network call and explains outages."""

from __future__ import annotations

import pytest

from services.media_svc import admin
from tests.helpers.processes import free_port


def test_a_malformed_id_is_refused_locally(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        admin.main(["--address", "127.0.0.1:1", "requeue", "../../etc/passwd"])
    assert exited.value.code == 2
    assert "is not a media_processing_id (a UUID4)" in capsys.readouterr().err


def test_an_unreachable_service_gets_a_hint(capsys: pytest.CaptureFixture[str]) -> None:
    address = f"127.0.0.1:{free_port()}"
    assert admin.main(["--address", address, "--timeout", "2", "pools"]) == 1
    error = capsys.readouterr().err
    assert error.startswith("error: UNAVAILABLE")
    assert f"is media_svc running at {address}?" in error
