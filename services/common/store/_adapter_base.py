"""What both adapters' plumbing shares: `async with`, a `close()` that runs once, and
the in-process wake-up of `wait_for_jobs` waiters."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Self

from services.common.store._notify import Notifier


class AdapterBase(ABC):
    def __init__(self) -> None:
        # Created by the first `wait_for_jobs`; until then nobody waits to be woken.
        self._notifier: Notifier | None = None
        self._closed = False

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Safe to call twice (the second call does nothing)."""
        if self._closed:
            return
        self._closed = True
        await self._close_resources()

    @abstractmethod
    async def _close_resources(self) -> None:
        """Releases what the adapter holds (connections, threads, tasks); runs once."""

    def _wake(self) -> None:
        if self._notifier is not None:
            self._notifier.wake()
