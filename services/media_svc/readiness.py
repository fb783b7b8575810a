"""Whether this replica is ready: every pool it serves can run its jobs.

A blocking pool is ready once its engine is loaded in every one of its worker processes
(`PoolExecutors.warm`); an event-loop pool, or any pool when warming is off
(MEDIA_WARM_POOLS=false: engines load on the first job), at once. Until all are ready the
replica reports NOT_SERVING (gRPC health, `/healthz`) and claims no job of a pool that is
not ready, so a pod whose model is missing neither takes traffic nor fails its pool's
jobs: other replicas take them. A failed load keeps the pool failed, its reason shown in
`/healthz` and the log, until the definitions change or the process restarts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

LOADING = "loading"
READY = "ready"
FAILED = "failed"


@dataclass(frozen=True, slots=True)
class PoolState:
    state: str
    detail: str = ""
    generation: int = 0


class EngineReadiness:
    def __init__(self, on_change: Callable[[], None] | None = None) -> None:
        self._pools: dict[str, PoolState] = {}
        self._generation = 0
        self._on_change = on_change or (lambda: None)

    def expect(self, ready: Iterable[str], loading: Iterable[str]) -> int:
        """The served pools after a table change: `ready` need no warm-up, `loading` are
        being warmed now. Returns the generation a warm-up reports under."""
        self._generation += 1
        self._pools = {name: PoolState(READY, "", self._generation) for name in ready}
        for name in loading:
            self._pools[name] = PoolState(LOADING, "", self._generation)
        self._on_change()
        return self._generation

    def loaded(self, pool: str, generation: int, detail: str) -> None:
        if self._report(pool, generation, PoolState(READY, detail, generation)):
            log.info("pool %s ready: %s", pool, detail)

    def failed(self, pool: str, generation: int, reason: str) -> None:
        if self._report(pool, generation, PoolState(FAILED, reason, generation)):
            log.error("pool %s NOT ready, this replica stays unready: %s", pool, reason)

    def _report(self, pool: str, generation: int, state: PoolState) -> bool:
        current = self._pools.get(pool)
        if current is None or current.generation != generation:
            return False  # a warm-up of a table no longer in force
        self._pools[pool] = state
        self._on_change()
        return True

    def accepts(self, pool: str) -> bool:
        """May this replica claim the pool's jobs (its engines are loaded)?"""
        state = self._pools.get(pool)
        return state is not None and state.state == READY

    def problem(self) -> str | None:
        """None when every served pool is ready, else why not (for health and logs)."""
        waiting = [
            f"pool {name} {state.state}" + (f": {state.detail}" if state.detail else "")
            for name, state in sorted(self._pools.items())
            if state.state != READY
        ]
        return "; ".join(waiting) if waiting else None

    def describe(self) -> dict[str, Any]:
        return {
            name: {"state": state.state, "detail": state.detail}
            for name, state in sorted(self._pools.items())
        }
