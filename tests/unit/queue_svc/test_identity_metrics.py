"""Operators see pairs learned and correspondents merged (queue_svc's registry)."""

from __future__ import annotations

from pathlib import Path

from services.common.store import IdentityPair
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
