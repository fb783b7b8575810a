"""The lease timer of a running job: a failed renewal tried again, a lost lease."""

from __future__ import annotations

import asyncio

from services.media_svc.lease import LeaseKeeper


class ScriptedRenewals:
    """Answers renewals from `answers` (an exception is raised), then True; `done` is set
    once the script is used up."""

    def __init__(self, answers: list[bool | Exception]) -> None:
        self.answers = answers
        self.calls = 0
        self.done = asyncio.Event()

    async def renew(self) -> bool:
        self.calls += 1
        answer = self.answers.pop(0) if self.answers else True
        if not self.answers:
            self.done.set()
        if isinstance(answer, Exception):
            raise answer
        return answer


async def test_a_failed_renewal_is_tried_again_and_a_refused_one_ends_the_run() -> None:
    renewals = ScriptedRenewals([True, OSError("store away"), False])
    lost = asyncio.Event()
    keeper = LeaseKeeper(renewals.renew, 0.01, lost.set, "job-1")
    await asyncio.wait_for(lost.wait(), 5)
    assert keeper.lost and renewals.calls == 3
    await keeper.stop()
