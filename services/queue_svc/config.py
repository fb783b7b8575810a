"""queue_svc configuration from the environment (documented in the README, "queue_svc")."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from services.common.env import env_bool, env_float, env_int, env_str
from services.common.errors import InvalidInputError
from services.common.sharding import ShardIdentity
from services.common.store import StoreConfig
from services.queue_svc.service import ServiceSettings


@dataclass(frozen=True, slots=True)
class Config:
    host: str = "127.0.0.1"
    # 0 lets the OS choose; the bound port is printed as `queue_svc listening on H:P`.
    port: int = 50051
    # Prometheus /metrics; 0 disables it.
    metrics_port: int = 9102
    shutdown_grace_seconds: float = 10.0
    service: ServiceSettings = field(default_factory=ServiceSettings)
    store: StoreConfig = field(default_factory=StoreConfig)

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise InvalidInputError(f"QUEUE_SVC_PORT must be 0..65535, got {self.port}")
        if not 0 <= self.metrics_port <= 65535:
            raise InvalidInputError(
                f"QUEUE_SVC_METRICS_PORT must be 0..65535 (0 disables), got {self.metrics_port}"
            )
        if self.service.batch_size < 1 or self.service.subscriber_buffer < 1:
            raise InvalidInputError(
                "QUEUE_SVC_INGEST_BATCH_SIZE and QUEUE_SVC_SUBSCRIBER_BUFFER must be >= 1"
            )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Config:
        env = os.environ if env is None else env
        defaults = ServiceSettings()
        service = ServiceSettings(
            batch_size=env_int(env, "QUEUE_SVC_INGEST_BATCH_SIZE", defaults.batch_size, 1),
            linger_seconds=env_float(env, "QUEUE_SVC_INGEST_LINGER_MS", 0.0) / 1000,
            retry_seconds=env_float(env, "QUEUE_SVC_INGEST_RETRY_MS", 500.0, 1.0) / 1000,
            write_timeout_seconds=env_float(
                env, "QUEUE_SVC_WRITE_TIMEOUT_SECONDS", defaults.write_timeout_seconds, 0.1
            ),
            subscriber_buffer=env_int(
                env, "QUEUE_SVC_SUBSCRIBER_BUFFER", defaults.subscriber_buffer, 1
            ),
            dedup_capacity=env_int(env, "QUEUE_SVC_DEDUP_CAPACITY", defaults.dedup_capacity, 1),
            definitions_refresh_seconds=env_float(
                env, "QUEUE_SVC_DEFINITIONS_REFRESH_SECONDS", defaults.definitions_refresh_seconds
            ),
            resume_bots=env_bool(env, "QUEUE_SVC_RESUME_BOTS", defaults.resume_bots),
            shard=ShardIdentity.from_env(env),
        )
        return cls(
            host=env_str(env, "QUEUE_SVC_HOST", "127.0.0.1"),
            port=env_int(env, "QUEUE_SVC_PORT", 50051),
            metrics_port=env_int(env, "QUEUE_SVC_METRICS_PORT", 9102),
            shutdown_grace_seconds=env_float(env, "QUEUE_SVC_SHUTDOWN_GRACE_SECONDS", 10.0),
            service=service,
            store=StoreConfig.from_env(env),
        )
