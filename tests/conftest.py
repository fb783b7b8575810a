"""Session-wide hooks: the store contract legs' report (tests/helpers/store_legs.py)."""

from __future__ import annotations

import pytest

from tests.helpers.store_legs import COLLECTED_LEGS, LEG_STATUS, LEGS, NO_MONGO


def pytest_configure(config: pytest.Config) -> None:
    config.stash[LEG_STATUS] = {}


def pytest_sessionfinish(session: pytest.Session) -> None:
    # Under pytest-xdist each worker records its own legs; the controller merges them.
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        legs: dict[str, str] = session.config.stash.get(LEG_STATUS, {})
        workeroutput["store_contract_legs"] = dict(legs)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: object, error: object) -> None:
    """xdist's hook: a worker finished; its legs join the controller's (a leg that ran
    on any worker ran)."""
    worker_legs = getattr(node, "workeroutput", {}).get("store_contract_legs", {})
    config: pytest.Config = getattr(node, "config")  # noqa: B009 (xdist's WorkerController)
    status = config.stash.setdefault(LEG_STATUS, {})
    for leg, outcome in worker_legs.items():
        if status.get(leg) != "ran":
            status[leg] = outcome


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    status = config.stash.get(LEG_STATUS, {})
    if not status:
        return
    absent = {leg: "not collected" for leg in LEGS}
    if "mongodb-uri" not in COLLECTED_LEGS:
        absent["mongodb-uri"] = f"skipped ({NO_MONGO})"
    legs = " ".join(f"{leg}={status.get(leg, absent[leg])}" for leg in LEGS)
    terminalreporter.write_line(f"store contract legs: {legs}")
