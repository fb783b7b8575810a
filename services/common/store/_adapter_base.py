"""What both adapters share: `async with`, a `close()` that runs once, the in-process
wake-up of `wait_for_jobs` waiters, and the public reads whose argument rules are the
same for both (the adapters implement only the query behind them)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Self

from services.common.store import _rules as rules
from services.common.store._message_types import AppendResult, StoredMessage
from services.common.store._notify import Notifier
from services.common.store._types import JobCollection, MediaJob, to_millis


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


class MessagesBase(ABC):
    @abstractmethod
    async def append_messages(self, messages: Sequence[StoredMessage]) -> AppendResult: ...

    async def insert_messages(self, messages: Sequence[StoredMessage]) -> int:
        """An append whose sequences the caller does not need."""
        return (await self.append_messages(messages)).inserted

    async def recent_messages(
        self,
        bot_id: str,
        provider_name: str,
        per_correspondent: int,
        since: datetime | None = None,
    ) -> dict[str, list[StoredMessage]]:
        rules.check_per_correspondent(per_correspondent)
        if per_correspondent == 0:
            return {}
        if since is not None:
            to_millis(since, "since")
        return await self._recent_messages(bot_id, provider_name, per_correspondent, since)

    @abstractmethod
    async def _recent_messages(
        self, bot_id: str, provider_name: str, per_correspondent: int, since: datetime | None
    ) -> dict[str, list[StoredMessage]]:
        """`recent_messages` with its arguments checked and `per_correspondent` > 0."""


@dataclass(frozen=True, slots=True)
class JobPage:
    """One page of a sweep: jobs of `collection` created before `before`, or with
    `completed` the completed ones last updated before it; oldest first by that time,
    then by insertion; `offset` of them skipped; `limit` > 0."""

    collection: JobCollection
    completed: bool
    before: datetime
    limit: int
    offset: int


class JobPagesBase(ABC):
    """The paged sweeps over old jobs (the cleanup, the redelivery sweep)."""

    async def jobs_older_than(
        self,
        collection: JobCollection,
        created_before: datetime,
        limit: int = 1000,
        offset: int = 0,
    ) -> list[MediaJob]:
        to_millis(created_before, "created_before")
        rules.check_page(limit, offset)
        if limit == 0:
            return []
        return await self._jobs_page(JobPage(collection, False, created_before, limit, offset))

    async def list_completed_jobs(
        self,
        collection: JobCollection,
        updated_before: datetime,
        limit: int = 100,
        offset: int = 0,
    ) -> list[MediaJob]:
        to_millis(updated_before, "updated_before")
        rules.check_page(limit, offset)
        if limit == 0:
            return []
        return await self._jobs_page(JobPage(collection, True, updated_before, limit, offset))

    @abstractmethod
    async def _jobs_page(self, page: JobPage) -> list[MediaJob]: ...
