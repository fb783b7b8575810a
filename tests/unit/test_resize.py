"""The online resize's plan and its state file: which bots move, and bad input refused
before anything is touched."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.common.errors import InvalidInputError
from services.common.resize import Move, ResizePlan, load_state, main, moves, save_state
from services.common.sharding import ShardAddresses, shard_of

BOTS = [f"bot-{i}" for i in range(3000)]


def test_growing_moves_only_bots_won_by_the_new_shard() -> None:
    moved = moves(BOTS, 2, 3)
    assert 0.3 < len(moved) / len(BOTS) < 0.37
    assert {m.target for m in moved} == {2}
    assert all(m.source == shard_of(m.bot_id, 2) for m in moved)
    assert [m.bot_id for m in moved] == sorted(m.bot_id for m in moved)
    assert moves(BOTS, 3, 3) == []


def test_shrinking_moves_only_the_removed_shards_bots() -> None:
    moved = moves(BOTS, 4, 3)
    assert {m.source for m in moved} == {3}
    assert {m.bot_id for m in moved} == {b for b in BOTS if shard_of(b, 4) == 3}


def test_the_state_file_round_trips_and_refuses_another_resize(tmp_path: Path) -> None:
    plan = ResizePlan(2, 3, ShardAddresses.parse("a:1,b:1,c:1"))
    state = tmp_path / "var" / "resize.json"
    assert load_state(state, plan) == []
    recorded = [Move("bot-1", 0, 2), Move("bot-9", 1, 2)]
    save_state(state, plan, recorded)
    assert load_state(state, plan) == recorded
    with pytest.raises(InvalidInputError, match="records a resize 2->3, not 2->4"):
        load_state(state, ResizePlan(2, 4, ShardAddresses.parse("a:1,b:1,c:1,d:1")))


def test_a_plan_needs_two_different_counts() -> None:
    with pytest.raises(InvalidInputError, match="nothing moves"):
        ResizePlan(3, 3, ShardAddresses.parse("a:1,b:1,c:1"))
    with pytest.raises(InvalidInputError, match=">= 1"):
        ResizePlan(0, 2, ShardAddresses.parse("a:1,b:1"))


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["start", "--from=2", "--to=3", "--addresses=a:1,b:1"], "`start` needs the first 3"),
        (["stop", "--from=2", "--to=2", "--addresses=a:1,b:1"], "nothing moves"),
        (["start", "--from=2", "--to=3", "--addresses=a:1,a:1,b:1"], "more than once"),
    ],
)
def test_bad_input_is_refused_with_a_clear_error_and_no_state(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], says: str
) -> None:
    state = tmp_path / "resize.json"
    assert main([*argv, f"--state={state}"], env={}) == 2
    assert says in capsys.readouterr().err
    assert not state.exists()
