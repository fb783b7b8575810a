"""The per-bot gate: which bots are starting, active or stopping, and the requests that
hold an active bot while they run (StopBot waits for them to finish)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from enum import Enum

from services.queue_svc.bot_queues import BotQueues
from services.queue_svc.service_types import BotNotActiveError


class BotState(Enum):
    STARTING = "starting"
    ACTIVE = "active"
    STOPPING = "stopping"


class GatedBot:
    def __init__(self, bot_id: str) -> None:
        self.bot_id = bot_id
        self.state = BotState.STARTING
        self.queues: BotQueues | None = None
        self.started = asyncio.Event()
        self.inflight = 0
        self.idle = asyncio.Event()
        self.idle.set()


class BotGate:
    """This process's bots; a request waits up to `write_timeout_seconds` for a bot that
    is still starting."""

    def __init__(self, write_timeout_seconds: float) -> None:
        self._bots: dict[str, GatedBot] = {}
        self._timeout = write_timeout_seconds

    def get(self, bot_id: str) -> GatedBot | None:
        return self._bots.get(bot_id)

    def begin(self, bot_id: str) -> GatedBot:
        """Registers a bot that is starting (StartBot)."""
        bot = self._bots[bot_id] = GatedBot(bot_id)
        return bot

    def remove(self, bot_id: str) -> None:
        self._bots.pop(bot_id, None)

    def bots(self) -> list[GatedBot]:
        return list(self._bots.values())

    def active_queues(self) -> list[BotQueues]:
        return [b.queues for b in self._bots.values() if b.queues is not None]

    def stop_all(self) -> None:
        """Shutdown: no new request is let in; the bots stay registered as active."""
        for bot in self._bots.values():
            if bot.state is BotState.ACTIVE:
                bot.state = BotState.STOPPING

    def is_active(self, bot_id: str) -> bool:
        bot = self._bots.get(bot_id)
        return bot is not None and bot.state is BotState.ACTIVE

    async def wait_started(self, bot_id: str) -> GatedBot | None:
        bot = self._bots.get(bot_id)
        if bot is not None and bot.state is BotState.STARTING:
            try:
                await asyncio.wait_for(bot.started.wait(), self._timeout)
            except TimeoutError:
                return None
            bot = self._bots.get(bot_id)
        if bot is None or bot.state is not BotState.ACTIVE or bot.queues is None:
            return None
        return bot

    @asynccontextmanager
    async def operation(self, bot_id: str) -> AsyncIterator[BotQueues]:
        """Holds the bot active for one request; StopBot waits for these to finish."""
        bot = await self.wait_started(bot_id)
        if bot is None or bot.queues is None:
            raise BotNotActiveError(f"bot {bot_id!r} is not active; call StartBot first")
        bot.inflight += 1
        bot.idle.clear()
        try:
            yield bot.queues
        finally:
            bot.inflight -= 1
            if bot.inflight == 0:
                bot.idle.set()
