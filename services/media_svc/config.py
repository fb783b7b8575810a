"""media_svc configuration from the environment (documented in the README, "media_svc")."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from services.common.env import env_bool, env_float, env_int, env_port
from services.common.errors import InvalidInputError
from services.common.media_store import MediaStoreConfig
from services.common.sharding import ShardAddresses
from services.common.store import StoreConfig

# Points at which the test-only hook MEDIA_SVC_CRASH_AT makes the process SIGKILL itself.
CRASH_POINTS = frozenset({"after_claim", "during_processing", "after_persist", "after_deliver"})


@dataclass(frozen=True, slots=True)
class MediaConfig:
    """Everything media_svc reads at start. Defaults suit one machine."""

    host: str = "127.0.0.1"
    # 0 lets the OS choose; the chosen address is printed on start.
    port: int = 50052
    # The queue_svc shards in shard order (QUEUE_SVC_ADDRESS, comma-separated): each
    # job's result goes to the shard of its bot.
    queue_shards: ShardAddresses = field(default_factory=ShardAddresses)
    worker_id: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    # Where staged media bytes live (MEDIA_STORE: filesystem at MEDIA_STAGING_DIR, or
    # GridFS in the store's MongoDB).
    media: MediaStoreConfig = field(default_factory=MediaStoreConfig)
    # This replica's own directory for the local copies processors read
    # (MEDIA_SCRATCH_DIR); None: a fresh temporary directory under ./var, removed at exit.
    scratch_dir: Path | None = None
    lease_seconds: float = 30.0
    max_attempts: int = 3
    backoff_base_seconds: float = 1.0
    backoff_max_seconds: float = 60.0
    # Upper bound on the idle wait between claims when no wake-up signal arrives.
    poll_fallback_seconds: float = 1.0
    definitions_reload_seconds: float = 10.0
    # Wall-clock limit of one processor run (CPU-bound runs are killed when it passes);
    # the default for pools whose definition sets no `timeout_seconds`.
    processor_timeout_seconds: float = 300.0
    # Address-space cap (MB) of each worker process of a blocking pool, for pools whose
    # definition sets no `memory_limit_mb`; 0 = no cap.
    worker_memory_limit_mb: int = 4096
    # The pools this replica claims from (MEDIA_POOLS, comma-separated pool names, case
    # insensitive); empty = every pool. Lets a deployment scale pools independently.
    pools: frozenset[str] = frozenset()
    # Start blocking pools' processes and load their engines at start-up and on reload.
    warm_pools: bool = True
    cleanup_interval_seconds: float = 3600.0
    stale_after_seconds: float = 10800.0
    # How long a staged file no job references is kept: its frame may still wait in
    # Node's outbox, which keeps frames until the gateway acknowledges them with no age
    # limit, so this is the longest gateway outage that loses no media (7 days).
    orphan_grace_seconds: float = 7 * 24 * 3600.0
    # Deadline of the one UpdateByMediaId attempt made inside a worker slot; a shard
    # that misses it is left alone with backoff and the result waits for redelivery.
    delivery_timeout_seconds: float = 2.0
    # Completed jobs left in ACTIVE longer than this are delivered again (crash recovery).
    redelivery_after_seconds: float = 30.0
    redelivery_interval_seconds: float = 15.0
    metrics_port: int = 9103
    metrics_refresh_seconds: float = 5.0
    shutdown_grace_seconds: float = 10.0
    store: StoreConfig = field(default_factory=StoreConfig)
    # Test hooks, never set in production: SIGKILL at a point of the job lifecycle, and
    # a JSON-lines trace of claims (pid, timestamps) for duplicate checks and the bench.
    crash_at: str | None = None
    trace_path: Path | None = None

    def __post_init__(self) -> None:
        if not self.host:
            raise InvalidInputError("MEDIA_SVC_HOST must not be empty (e.g. 127.0.0.1)")
        if not self.worker_id:
            raise InvalidInputError("MEDIA_WORKER_ID must not be empty")
        if self.lease_seconds < 1:
            raise InvalidInputError("MEDIA_LEASE_SECONDS must be >= 1")
        if self.max_attempts < 1:
            raise InvalidInputError("MEDIA_MAX_ATTEMPTS must be >= 1")
        if self.backoff_max_seconds < self.backoff_base_seconds:
            raise InvalidInputError(
                "MEDIA_BACKOFF_MAX_SECONDS must be >= MEDIA_BACKOFF_BASE_SECONDS"
            )
        if self.poll_fallback_seconds <= 0:
            raise InvalidInputError("MEDIA_POLL_FALLBACK_SECONDS must be > 0")
        if self.cleanup_interval_seconds <= 0 or self.definitions_reload_seconds <= 0:
            raise InvalidInputError(
                "MEDIA_CLEANUP_INTERVAL_SECONDS and MEDIA_DEFINITIONS_RELOAD_SECONDS must be > 0"
            )
        if self.worker_memory_limit_mb and self.worker_memory_limit_mb < 64:
            raise InvalidInputError("MEDIA_WORKER_MEMORY_LIMIT_MB must be 0 (no cap) or >= 64")
        if self.crash_at is not None and self.crash_at not in CRASH_POINTS:
            raise InvalidInputError(
                f"MEDIA_SVC_CRASH_AT must be one of {sorted(CRASH_POINTS)} (a test hook), "
                f"got {self.crash_at!r}"
            )

    def serves(self, pool: str) -> bool:
        return not self.pools or pool.lower() in self.pools

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> MediaConfig:
        env = os.environ if env is None else env
        default = cls()
        trace = env.get("MEDIA_SVC_TRACE_PATH", "").strip()
        scratch = env.get("MEDIA_SCRATCH_DIR", "").strip()
        return cls(
            host=env.get("MEDIA_SVC_HOST", "").strip() or default.host,
            port=env_port(env, "MEDIA_SVC_PORT", default.port),
            queue_shards=ShardAddresses.from_env(env),
            worker_id=env.get("MEDIA_WORKER_ID", "").strip() or default.worker_id,
            media=MediaStoreConfig.from_env(env),
            scratch_dir=Path(scratch) if scratch else None,
            lease_seconds=env_float(env, "MEDIA_LEASE_SECONDS", default.lease_seconds),
            max_attempts=env_int(env, "MEDIA_MAX_ATTEMPTS", default.max_attempts, 1),
            backoff_base_seconds=env_float(
                env, "MEDIA_BACKOFF_BASE_SECONDS", default.backoff_base_seconds
            ),
            backoff_max_seconds=env_float(
                env, "MEDIA_BACKOFF_MAX_SECONDS", default.backoff_max_seconds
            ),
            poll_fallback_seconds=env_float(
                env, "MEDIA_POLL_FALLBACK_SECONDS", default.poll_fallback_seconds
            ),
            definitions_reload_seconds=env_float(
                env, "MEDIA_DEFINITIONS_RELOAD_SECONDS", default.definitions_reload_seconds
            ),
            processor_timeout_seconds=env_float(
                env, "MEDIA_PROCESSOR_TIMEOUT_SECONDS", default.processor_timeout_seconds, 0.001
            ),
            worker_memory_limit_mb=env_int(
                env, "MEDIA_WORKER_MEMORY_LIMIT_MB", default.worker_memory_limit_mb
            ),
            pools=pool_filter(env.get("MEDIA_POOLS", "")),
            warm_pools=env_bool(env, "MEDIA_WARM_POOLS", default.warm_pools),
            cleanup_interval_seconds=env_float(
                env, "MEDIA_CLEANUP_INTERVAL_SECONDS", default.cleanup_interval_seconds
            ),
            stale_after_seconds=env_float(
                env, "MEDIA_STALE_AFTER_SECONDS", default.stale_after_seconds
            ),
            orphan_grace_seconds=env_float(
                env, "MEDIA_ORPHAN_GRACE_SECONDS", default.orphan_grace_seconds
            ),
            delivery_timeout_seconds=env_float(
                env, "MEDIA_DELIVERY_TIMEOUT_SECONDS", default.delivery_timeout_seconds, 0.05
            ),
            redelivery_after_seconds=env_float(
                env, "MEDIA_REDELIVERY_AFTER_SECONDS", default.redelivery_after_seconds
            ),
            redelivery_interval_seconds=env_float(
                env, "MEDIA_REDELIVERY_INTERVAL_SECONDS", default.redelivery_interval_seconds, 0.01
            ),
            metrics_port=env_port(env, "MEDIA_SVC_METRICS_PORT", default.metrics_port),
            metrics_refresh_seconds=env_float(
                env, "MEDIA_METRICS_REFRESH_SECONDS", default.metrics_refresh_seconds, 0.01
            ),
            shutdown_grace_seconds=env_float(
                env, "MEDIA_SHUTDOWN_GRACE_SECONDS", default.shutdown_grace_seconds
            ),
            store=StoreConfig.from_env(env),
            crash_at=env.get("MEDIA_SVC_CRASH_AT", "").strip() or None,
            trace_path=Path(trace) if trace else None,
        )


def pool_filter(raw: str) -> frozenset[str]:
    """`audio, Video` → {"audio", "video"}; names are matched case-insensitively."""
    names = [name.strip().lower() for name in raw.split(",")]
    if any(not name for name in names) and raw.strip():
        raise InvalidInputError(
            f"MEDIA_POOLS must be comma-separated pool names such as 'Audio,Video', got {raw!r}"
        )
    return frozenset(name for name in names if name)
