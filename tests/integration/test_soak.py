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
# measured here at +0.0 to +1.2 % over 20-60 s. Where the 10-minute soak exceeds it the
# growth itself is the defect (the performance issue), never this number.
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
