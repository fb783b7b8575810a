"""Waiting for a condition that no event announces (files on disk, another process)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def wait_until(condition: Callable[[], bool], within: float, every: float = 0.05) -> None:
    """Polls `condition` until it holds; TimeoutError after `within` seconds."""
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110 (nothing to await but time)
            await asyncio.sleep(every)
