"""The soak of bench/soak.py for 60 s: mixed traffic (text, every structured kind, every
media kind through zero-delay stub pools) through the real gateway, queue_svc, media_svc
and webhook relay; a consumer that keeps its cursors sees every accepted frame exactly
once, the relay posts every message, and no service's memory grows out of bounds."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.soak import print_report, soak

SECONDS = 60
RATE = 100
# The target (README, bench/RESULTS.md: at most 10 % after warm-up), not a looser bound:
# measured here over 60 s at -0.8 to +0.2 % for gateway, media_svc and relay and +6.7 %
# for queue_svc (its windows filling; load average 11). The 120 s soak of
# bench/RESULTS.md measured 22.6 %: where a run exceeds the target, the growth itself is
# the defect (the performance issue), never this number.
GROWTH_BOUND_PCT = 10


@pytest.mark.timeout(120)
async def test_soak_delivers_every_accepted_frame_once(tmp_path: Path) -> None:
    report = await soak(SECONDS, RATE, tmp_path)
    print_report(report)
    assert report.tally.sent == SECONDS * RATE
    assert report.tally.accepted == report.tally.sent
    assert report.tally.lost == 0
    assert report.tally.duplicated == 0
    assert report.tally.delivered_once == report.tally.accepted
    assert report.relay_missing == 0
    assert set(report.kinds) == {"text", "structured", "media"}
    assert set(report.growth) == {"gateway", "queue_svc", "media_svc", "relay"}
    assert report.max_growth <= GROWTH_BOUND_PCT, report.growth
