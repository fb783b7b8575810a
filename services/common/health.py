"""Health that reflects reality: a periodic probe of the store flips gRPC health.

A service whose store cannot be written is of no use to its callers even though its
process is up; reporting NOT_SERVING lets Kubernetes stop routing to it and tells an
operator where the problem is. The probe is one tiny write (a lease on a name nobody
else uses) under a timeout: a read alone would still succeed on a locked SQLite file.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from grpc_health.v1 import _async as health_aio
from grpc_health.v1 import health_pb2

from services.common.env import env_float

log = logging.getLogger(__name__)

PROBE_LEASE = "store_probe"


class ProbedStore(Protocol):
    async def acquire_lease(self, name: str, holder: str, ttl_seconds: float) -> bool: ...


@dataclass(frozen=True)
class ProbeSettings:
    """STORE_PROBE_INTERVAL_SECONDS (default 2) and STORE_PROBE_TIMEOUT_SECONDS (default 1)."""

    interval_seconds: float = 2.0
    timeout_seconds: float = 1.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ProbeSettings:
        return cls(
            interval_seconds=env_float(env, "STORE_PROBE_INTERVAL_SECONDS", 2.0, minimum=0.05),
            timeout_seconds=env_float(env, "STORE_PROBE_TIMEOUT_SECONDS", 1.0, minimum=0.01),
        )


async def store_reachable(store: ProbedStore, within: float) -> str | None:
    """None when the store took a write within `within` seconds, else why not."""
    try:
        await asyncio.wait_for(
            store.acquire_lease(PROBE_LEASE, uuid.uuid4().hex, 1.0), timeout=within
        )
    except TimeoutError:
        return f"the store did not answer within {within:g}s"
    except Exception as error:
        return f"the store failed: {type(error).__name__}: {error}"
    return None


class StoreHealth:
    """Keeps the health status of `names` in step with the store's reachability and,
    when given, a service's own readiness (`ready`: None when ready, else why not)."""

    def __init__(
        self,
        store: ProbedStore,
        health: health_aio.HealthServicer,
        names: Sequence[str],
        settings: ProbeSettings,
        ready: Callable[[], str | None] | None = None,
    ) -> None:
        self._store = store
        self._health = health
        self._names = tuple(names)
        self._settings = settings
        self._ready = ready
        self.serving: bool | None = None
        # Why the service is NOT_SERVING (None while SERVING), for /healthz.
        self.problem: str | None = "not checked yet"

    async def check_once(self) -> bool:
        problem = await store_reachable(self._store, self._settings.timeout_seconds)
        if problem is not None:
            problem = f"store unreachable: {problem}"
        elif self._ready is not None:
            problem = self._ready()
        serving = problem is None
        if serving != self.serving or (problem is not None and problem != self.problem):
            if serving:
                log.info("ready: SERVING")
            else:
                log.warning("NOT_SERVING: %s", problem)
            status = (
                health_pb2.HealthCheckResponse.SERVING
                if serving
                else health_pb2.HealthCheckResponse.NOT_SERVING
            )
            for name in self._names:
                await self._health.set(name, status)
            self.serving = serving
        self.problem = problem
        return serving

    async def run(self) -> None:
        """Probes forever; cancel to stop (graceful shutdown then owns the status)."""
        while True:
            await self.check_once()
            await asyncio.sleep(self._settings.interval_seconds)
