"""EVENT_LOOP: the loop every service runs on (services/common/event_loop.py)."""

from __future__ import annotations

import asyncio

import pytest
import uvloop

from services.common.errors import InvalidInputError
from services.common.event_loop import event_loop_choice, run


def test_the_default_is_uvloop_when_installed() -> None:
    assert event_loop_choice({}) == "uvloop"
    assert event_loop_choice({"EVENT_LOOP": " AsyncIO "}) == "asyncio"


def test_an_unknown_loop_is_refused_with_the_choices() -> None:
    with pytest.raises(InvalidInputError, match="'trio' is not one of uvloop, asyncio"):
        event_loop_choice({"EVENT_LOOP": "trio"})


async def _loop_type() -> type[asyncio.AbstractEventLoop]:
    return type(asyncio.get_running_loop())


def test_run_uses_the_chosen_loop() -> None:
    assert run(_loop_type(), "uvloop") is uvloop.Loop
    assert not issubclass(run(_loop_type(), "asyncio"), uvloop.Loop)
