"""Environment values are parsed strictly and every error names its variable."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from services.common.env import env_bool, env_float, env_int, env_port
from services.common.errors import InvalidInputError
from services.gateway.config import GatewayConfig
from services.media_svc.config import MediaConfig


def test_defaults_apply_when_unset_or_blank() -> None:
    assert env_int({}, "X", 7) == 7
    assert env_float({"X": "  "}, "X", 1.5) == 1.5
    assert env_bool({}, "X", True) is True
    assert env_port({"X": "0"}, "X", 80) == 0


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: env_int({"N": "ten"}, "N", 1), "N must be an integer"),
        (lambda: env_int({"N": "-1"}, "N", 1, minimum=0), "N must be >= 0"),
        (lambda: env_float({"F": "nan"}, "F", 1.0), "F must be >= 0.0"),
        (lambda: env_float({"F": "x"}, "F", 1.0), "F must be a number"),
        (lambda: env_port({"P": "70000"}, "P", 1), "P must be a TCP port"),
        (lambda: env_bool({"B": "maybe"}, "B", False), "B must be true or false"),
    ],
)
def test_bad_values_name_the_variable(call: object, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        call()  # type: ignore[operator]


def test_services_refuse_bad_configuration_at_start() -> None:
    with pytest.raises(InvalidInputError, match="MEDIA_SVC_PORT"):
        MediaConfig.from_env({"MEDIA_SVC_PORT": "99999"})
    with pytest.raises(InvalidInputError, match="GATEWAY_TOKEN and GATEWAY_API_TOKEN"):
        GatewayConfig.from_env({})
    insecure = GatewayConfig.from_env({"GATEWAY_INSECURE_NO_AUTH": "1", "GATEWAY_PORT": "0"})
    assert insecure.port == 0


@pytest.mark.parametrize(
    ("module", "variable"),
    [
        ("services.queue_svc", "QUEUE_SVC_PORT"),
        ("services.media_svc", "MEDIA_SVC_PORT"),
        ("services.gateway", "GATEWAY_PORT"),
    ],
)
def test_each_service_exits_2_with_a_message_on_bad_configuration(
    module: str, variable: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", module],
        env={**os.environ, variable: "not-a-port"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert f"configuration error: {variable} must be an integer" in result.stderr
    assert "Traceback" not in result.stderr
