"""A claimed job's lease, renewed on a timer while its run lasts.

A timer rather than a renewal task per job: most runs end long before the first renewal
is due, and a task of their own (created, waited on beside the run, then cancelled)
cost every job of the media bench a share of media_svc's CPU for nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

Renew = Callable[[], Awaitable[bool]]


class LeaseKeeper:
    """Renews every `interval` seconds until `stop()`; when a renewal answers that the
    lease is gone, `on_lost` is called once and renewals end. A renewal that fails is
    logged and tried again at the next tick, as the lease may still be held."""

    def __init__(
        self, renew: Renew, interval: float, on_lost: Callable[[], object], what: str
    ) -> None:
        self._renew = renew
        self._interval = interval
        self._on_lost = on_lost
        self._what = what
        self._loop = asyncio.get_running_loop()
        self._renewing: asyncio.Task[None] | None = None
        self._stopped = False
        self.lost = False
        self._timer: asyncio.TimerHandle | None = self._loop.call_later(interval, self._due)

    def _due(self) -> None:
        self._timer = None
        self._renewing = self._loop.create_task(self._renew_once())

    async def _renew_once(self) -> None:
        try:
            held = await self._renew()
        except Exception:
            log.exception("renewing the lease of %s failed; will retry", self._what)
            held = True
        self._renewing = None
        if self._stopped:
            return
        if not held:
            self.lost = True
            self._on_lost()
            return
        self._timer = self._loop.call_later(self._interval, self._due)

    async def stop(self) -> None:
        """No renewal after this returns (one in flight is cancelled)."""
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        renewing, self._renewing = self._renewing, None
        if renewing is not None:
            renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewing
