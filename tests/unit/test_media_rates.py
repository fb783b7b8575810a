"""Throughput and failure rate from media_svc's real metrics exposition: counted over the
window, per pool, started again when a replica's counters fall (a restart)."""

from __future__ import annotations

from prometheus_client import generate_latest

from services.gateway.media_rates import parse_totals, rates
from services.media_svc.metrics import MediaMetrics


def _exposition(metrics: MediaMetrics) -> str:
    return generate_latest(metrics.registry).decode()


def test_rates_count_finished_jobs_per_minute_and_the_failed_share() -> None:
    metrics = MediaMetrics()
    before = parse_totals(_exposition(metrics))
    for _ in range(3):
        metrics.jobs.labels("Audio", "delivered").inc()
    metrics.jobs.labels("Audio", "failed").inc()
    metrics.jobs.labels("Corrupt", "failed").inc(2)
    metrics.jobs.labels("Audio", "held").inc()  # not finished: not counted
    after = parse_totals(_exposition(metrics))
    assert after[("Audio", "delivered")] == 3 and after[("Corrupt", "failed")] == 2
    found = {r.pool: r for r in rates("replica-1", [(10.0, before), (40.0, after)])}
    assert found["Audio"].jobs_per_minute == 8.0  # 4 finished in 30 s
    assert found["Audio"].failure_rate == 0.25
    assert found["Corrupt"].failure_rate == 1.0
    assert found["Audio"].window_seconds == 30.0
    # One sample is no rate; a pool with nothing finished has no failure rate.
    assert rates("replica-1", [(10.0, after)]) == []
    idle = rates("replica-1", [(10.0, after), (20.0, after)])
    assert {r.failure_rate for r in idle} == {None}
    assert {r.jobs_per_minute for r in idle} == {0.0}
