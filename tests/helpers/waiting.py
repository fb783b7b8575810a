"""Waiting for a condition that no event announces (files on disk, another process)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

_T = TypeVar("_T")


async def wait_until(condition: Callable[[], bool], within: float, every: float = 0.05) -> None:
    """Polls `condition` until it holds; TimeoutError after `within` seconds."""
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110 (nothing to await but time)
            await asyncio.sleep(every)


async def eventually(check: Callable[[], Awaitable[_T]], within: float, every: float = 0.05) -> _T:
    """Polls the coroutine function `check` until it returns something truthy, and
    returns that; TimeoutError after `within` seconds."""
    async with asyncio.timeout(within):
        while not (result := await check()):  # noqa: ASYNC110 (nothing to await but time)
            await asyncio.sleep(every)
        return result
