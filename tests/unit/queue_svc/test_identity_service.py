"""QueueService's identity learning on the real SQLite store: what operators see, and a
bot that starts while LearnIdentities records its pairs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from services.common.store import IdentityPair
from services.common.store.sqlite import SqliteStore
from services.queue_svc.metrics import QueueMetrics
from services.queue_svc.service import AddItem, QueueService, ServiceSettings
from tests.unit.queue_svc.helpers import sqlite_store, text

PAIR = IdentityPair("5150@lid", "4915100000051@s.whatsapp.net")


async def test_learning_and_merging_are_counted(tmp_path: Path) -> None:
    metrics = QueueMetrics()
    async with sqlite_store(tmp_path) as store:
        service = QueueService(store, ServiceSettings(resume_bots=False), metrics)
        await service.start()
        try:
            await service.start_bot("bot")
            await service.add_messages([AddItem("bot", PAIR.phone_jid, text(pid="WA-1"))])
            assert await service.learn_identities("bot", [PAIR]) == (1, 1)
            assert await service.learn_identities("bot", [PAIR]) == (0, 0)
        finally:
            await service.shutdown()

    def value(name: str) -> float | None:
        return metrics.registry.get_sample_value(name)

    assert value("queue_svc_identities_learned_total") == 1
    assert value("queue_svc_correspondents_merged_total") == 1


class StartsBetweenReadAndWrite(SqliteStore):
    """Runs `before_learn` just before recording pairs: a StartBot that read the map
    before the pairs were in it."""

    before_learn: Callable[[], Awaitable[object]] | None = None

    async def learn_identities(
        self, bot_id: str, pairs: Sequence[IdentityPair]
    ) -> list[IdentityPair]:
        hook, self.before_learn = self.before_learn, None
        if hook is not None:
            await hook()
        return await super().learn_identities(bot_id, pairs)


async def test_pairs_recorded_while_the_bot_starts_are_applied_at_once(tmp_path: Path) -> None:
    store = await StartsBetweenReadAndWrite.open(tmp_path / "store.sqlite3")
    service = QueueService(store, ServiceSettings(resume_bots=False))
    await service.start()
    try:
        await service.start_bot("bot")
        await service.add_messages([AddItem("bot", PAIR.phone_jid, text(pid="WA-1"))])
        await service.stop_bot("bot")
        store.before_learn = lambda: service.start_bot("bot")
        # Not active when the call came in; active (without the pair) once it is written.
        assert await service.learn_identities("bot", [PAIR]) == (1, 1)
        window = await service.window("bot", PAIR.phone_jid)
        # The phone JID's window (restored by that StartBot) moved in, then the event.
        assert [m.provider_message_id for m in window.messages] == [
            "WA-1",
            f"identity-change:{PAIR.phone_jid}>{PAIR.lid}",
        ]
        assert [k.settled for k in await store.identities("bot")] == [True]
    finally:
        await service.shutdown()
        await store.close()
