"""Environment values are parsed strictly and every error names its variable."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from services.common.env import env_bool, env_float, env_int, env_port
from services.common.errors import InvalidInputError
from services.common.sharding import ShardAddresses, ShardIdentity
from services.gateway.config import GatewayConfig
from services.media_svc.config import MediaConfig
from services.queue_svc.config import Config as QueueConfig


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


def test_every_caller_reads_the_queue_svc_shard_list_alike() -> None:
    listed = {"QUEUE_SVC_ADDRESS": "q-0:50051, q-1:50051", "GATEWAY_INSECURE_NO_AUTH": "1"}
    expected = ShardAddresses(("q-0:50051", "q-1:50051"))
    assert GatewayConfig.from_env(listed).queue_shards == expected
    assert MediaConfig.from_env(listed).queue_shards == expected
    # Unset: today's single queue_svc.
    assert MediaConfig.from_env({}).queue_shards.addresses == ("127.0.0.1:50051",)
    for bad in ("q-0:50051,,q-1:50051", "q-0:50051,q-0:50051"):
        env = {**listed, "QUEUE_SVC_ADDRESS": bad}
        with pytest.raises(InvalidInputError, match="QUEUE_SVC_ADDRESS"):
            GatewayConfig.from_env(env)
        with pytest.raises(InvalidInputError, match="QUEUE_SVC_ADDRESS"):
            MediaConfig.from_env(env)


def test_queue_svc_reads_its_shard() -> None:
    assert QueueConfig.from_env({}).service.shard == ShardIdentity(0, 1)
    pod = {"QUEUE_SVC_SHARD_COUNT": "2", "HOSTNAME": "queue-svc-1"}
    assert QueueConfig.from_env(pod).service.shard == ShardIdentity(1, 2)
    with pytest.raises(InvalidInputError, match="QUEUE_SVC_SHARD"):
        QueueConfig.from_env({"QUEUE_SVC_SHARD": "3/2"})


def test_queue_svc_exits_2_naming_a_bad_shard() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "services.queue_svc"],
        env={**os.environ, "QUEUE_SVC_SHARD": "1-of-2"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "configuration error: QUEUE_SVC_SHARD must be <index>/<count>" in result.stderr
