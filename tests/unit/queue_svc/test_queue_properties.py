"""Property tests: random operation sequences keep the invariants of SPEC section 3."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.queue_svc.bot_queues import BotQueues, ReadyMessage
from services.queue_svc.correspondent_queue import UpdateStatus
from services.queue_svc.messages import QueueLimits
from tests.unit.queue_svc.helpers import IMAGE, FakeClock, text

CORRESPONDENTS = ["c1", "c2", "c3"]
MEDIA_IDS = [f"m{i}" for i in range(12)]

correspondent = st.sampled_from(CORRESPONDENTS)
provider_id = st.sampled_from(["", "", "", "p1", "p2", "p3", "p4", "p5", "p6"])
content = st.text(alphabet="abcxyz", max_size=30)

operation = st.one_of(
    st.tuples(st.just("add"), correspondent, content, provider_id),
    st.tuples(st.just("inject"), correspondent, content, st.sampled_from(MEDIA_IDS)),
    st.tuples(st.just("resolve"), correspondent, content, st.sampled_from(MEDIA_IDS)),
    st.tuples(st.just("pop"), st.integers(min_value=0, max_value=4)),
    st.tuples(st.just("tick"), st.integers(min_value=0, max_value=40)),
)


def check_queue_invariants(bot: BotQueues, limits: QueueLimits) -> None:
    for _, q in bot.queues():
        counted = q.counted()
        assert q.total_characters == sum(m.message_size for m in counted)
        assert all(not m.is_placeholder for m in counted)
        assert all(p.is_placeholder for p in q.placeholders())
        assert len(counted) <= limits.max_messages
        assert q.total_characters <= limits.max_characters
        ids = [m.id for m in q.window()]
        assert len(ids) == len(set(ids))
        assert all(i < q.next_id for i in ids)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ops=st.lists(operation, max_size=80),
    max_messages=st.integers(min_value=1, max_value=6),
    max_characters=st.integers(min_value=20, max_value=120),
)
def test_random_operations_keep_every_invariant(
    ops: list[tuple[object, ...]], max_messages: int, max_characters: int
) -> None:
    limits = QueueLimits(
        max_messages=max_messages,
        max_characters=max_characters,
        max_age_seconds=100,
        max_message_characters=25,
    )
    clock = FakeClock()
    bot = BotQueues("bot", "p", limits, clock=clock)
    accepted: list[tuple[str, int]] = []  # every message that became ready (to emit)
    persisted: list[ReadyMessage] = []
    live: dict[str, tuple[str, int]] = {}  # media id → (correspondent, id)
    last_id: dict[str, int] = {}
    accepted_pids: set[str] = set()

    for op in ops:
        kind = op[0]
        if kind == "add":
            _, corr, body, pid = op
            assert isinstance(corr, str) and isinstance(body, str) and isinstance(pid, str)
            outcome = bot.add(corr, text(body, pid=pid))
            if pid and (pid in accepted_pids):
                assert outcome.duplicate
            if outcome.entry is not None:
                assert outcome.entry.id > last_id.get(corr, 0)
                last_id[corr] = outcome.entry.id
                accepted.append((corr, outcome.entry.id))
                if pid:
                    accepted_pids.add(pid)
        elif kind == "inject":
            _, corr, caption, mid = op
            assert isinstance(corr, str) and isinstance(caption, str) and isinstance(mid, str)
            if mid in live or bot.find_media(mid) is not None:
                continue  # media ids are unique per message; the service checks this
            entry, created = bot.inject_placeholder(corr, text(caption), IMAGE, mid)
            assert created and entry.id > last_id.get(corr, 0)
            last_id[corr] = entry.id
            live[mid] = (corr, entry.id)
        elif kind == "resolve":
            _, corr, body, mid = op
            assert isinstance(corr, str) and isinstance(body, str) and isinstance(mid, str)
            resolved = bot.resolve(corr, mid, body)
            if mid in live and live[mid][0] == corr:
                assert resolved.status is UpdateStatus.UPDATED and resolved.entry is not None
                assert resolved.entry.id == live[mid][1]
                del live[mid]
                accepted.append((corr, resolved.entry.id))
            else:
                assert resolved.entry is None  # nothing emitted twice or out of nowhere
        elif kind == "pop":
            limit = op[1]
            assert isinstance(limit, int)
            popped = bot.pop_ready(limit)
            assert len(popped) <= limit
            assert all(not r.message.is_placeholder for r in popped)
            persisted.extend(popped)
        else:
            seconds = op[1]
            assert isinstance(seconds, int)
            clock.now += seconds
        check_queue_invariants(bot, limits)
        # No placeholder was ever evicted: every live one is still in its queue.
        for mid, (corr, message_id) in live.items():
            placeholder = bot.queue(corr).placeholder(mid)
            assert placeholder is not None and placeholder.id == message_id

    persisted.extend(bot.pop_ready(10_000))  # the final drain
    keys = [(r.correspondent_id, r.message.id) for r in persisted]
    assert sorted(keys) == sorted(accepted)  # every accepted message exactly once
    assert len(keys) == len(set(keys))
    assert all(not r.message.is_placeholder for r in persisted)
    # Per correspondent, the persistence order is the order messages became ready.
    for corr in CORRESPONDENTS:
        assert [k for k in keys if k[0] == corr] == [k for k in accepted if k[0] == corr]
