"""Relay configuration from the environment (documented in the README, "webhook relay")."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field

from services.common.env import env_float, env_int, env_port, env_str
from services.common.errors import InvalidInputError
from services.common.outbound_http import OutboundPolicy
from services.common.sharding import ShardAddresses
from services.common.store import StoreConfig


def default_instance_id() -> str:
    """The host name (a pod's name) and the process id: unique per replica."""
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True)
class RelayConfig:
    # Bind address of the relay's own HTTP endpoint (/metrics, /healthz).
    host: str = "127.0.0.1"
    port: int = 9104
    # The queue_svc shards in shard order (QUEUE_SVC_ADDRESS, comma-separated).
    queue_shards: ShardAddresses = field(default_factory=ShardAddresses)
    # The key of the relays' cursors in the store, shared by every replica (each bot's
    # cursor is moved only by the relay holding the bot's lease).
    consumer_name: str = "webhook-relay"
    # This replica's name in the leases; unique per replica (the pod name).
    instance_id: str = field(default_factory=default_instance_id)
    # A bot's lease: renewed every third of it; a dead relay's bots move after it.
    lease_seconds: float = 15.0
    # Replies found in webhook responses are sent through the gateway's API.
    gateway_url: str = "http://127.0.0.1:8090"
    gateway_api_token: str = ""
    # One webhook POST (connect + answer).
    timeout_seconds: float = 10.0
    backoff_base_seconds: float = 0.5
    backoff_max_seconds: float = 60.0
    # A message is given up (dead-lettered) after this many attempts, or once the next
    # attempt would start more than `max_retry_seconds` after the first one, whichever
    # comes first; the bot's later messages wait behind it until then.
    max_attempts: int = 10
    max_retry_seconds: float = 600.0
    # Answers that retrying will not change (4xx but 408 and 429, a 301/308, a refused
    # destination) are given up after this many attempts.
    permanent_failure_attempts: int = 2
    # The most of a 2xx response read (for its reply); beyond it the connection is
    # closed and the message counts as delivered without a reply.
    max_response_bytes: int = 65536
    # Destinations allowed beyond the public internet (OUTBOUND_ALLOW_HOSTS).
    outbound: OutboundPolicy = field(default_factory=OutboundPolicy)
    # Messages held in memory per bot; beyond it the bot's worker reads from the store.
    bot_buffer: int = 1000
    # How long a bot's webhook settings are cached.
    config_refresh_seconds: float = 5.0
    store: StoreConfig = field(default_factory=StoreConfig)

    def __post_init__(self) -> None:
        if not self.consumer_name:
            raise InvalidInputError("RELAY_CONSUMER_NAME must not be empty")
        if not self.instance_id:
            raise InvalidInputError("RELAY_INSTANCE_ID must not be empty")
        if not self.lease_seconds > 0:
            raise InvalidInputError(f"RELAY_LEASE_SECONDS must be > 0, got {self.lease_seconds}")
        if not self.gateway_url.startswith(("http://", "https://")):
            raise InvalidInputError(
                f"RELAY_GATEWAY_URL must be an http:// or https:// URL, got {self.gateway_url!r}"
            )
        if not self.timeout_seconds > 0 or not self.backoff_base_seconds > 0:
            raise InvalidInputError(
                "RELAY_TIMEOUT_SECONDS and RELAY_BACKOFF_BASE_SECONDS must be > 0"
            )
        if self.backoff_max_seconds < self.backoff_base_seconds:
            raise InvalidInputError(
                "RELAY_BACKOFF_MAX_SECONDS must be >= RELAY_BACKOFF_BASE_SECONDS"
            )
        if self.permanent_failure_attempts > self.max_attempts:
            raise InvalidInputError(
                "RELAY_PERMANENT_FAILURE_ATTEMPTS must be <= RELAY_MAX_ATTEMPTS"
            )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RelayConfig:
        env = os.environ if env is None else env
        return cls(
            host=env_str(env, "RELAY_HOST", "127.0.0.1"),
            port=env_port(env, "RELAY_PORT", 9104),
            queue_shards=ShardAddresses.from_env(env),
            consumer_name=env_str(env, "RELAY_CONSUMER_NAME", "webhook-relay"),
            instance_id=env_str(env, "RELAY_INSTANCE_ID", default_instance_id()),
            lease_seconds=env_float(env, "RELAY_LEASE_SECONDS", 15.0),
            gateway_url=env_str(env, "RELAY_GATEWAY_URL", "http://127.0.0.1:8090").rstrip("/"),
            gateway_api_token=env.get("RELAY_GATEWAY_API_TOKEN", ""),
            timeout_seconds=env_float(env, "RELAY_TIMEOUT_SECONDS", 10.0),
            backoff_base_seconds=env_float(env, "RELAY_BACKOFF_BASE_SECONDS", 0.5),
            backoff_max_seconds=env_float(env, "RELAY_BACKOFF_MAX_SECONDS", 60.0),
            max_attempts=env_int(env, "RELAY_MAX_ATTEMPTS", 10, minimum=1),
            max_retry_seconds=env_float(env, "RELAY_MAX_RETRY_SECONDS", 600.0),
            permanent_failure_attempts=env_int(
                env, "RELAY_PERMANENT_FAILURE_ATTEMPTS", 2, minimum=1
            ),
            max_response_bytes=env_int(env, "RELAY_MAX_RESPONSE_BYTES", 65536, minimum=1024),
            outbound=OutboundPolicy.from_env(env),
            bot_buffer=env_int(env, "RELAY_BOT_BUFFER", 1000, minimum=1),
            config_refresh_seconds=env_float(env, "RELAY_CONFIG_REFRESH_SECONDS", 5.0),
            store=StoreConfig.from_env(env),
        )
