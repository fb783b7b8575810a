"""Throughput and failure rate per media pool and replica, from each media_svc
replica's Prometheus counter `media_jobs_total{pool, outcome}`
(GATEWAY_MEDIA_SVC_METRICS_URLS): read when the pools are shown, kept for a window, and
turned into jobs per minute and the share that failed over that window. A replica that
restarted (its counters fell) starts its window again."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

# media_svc's outcomes of a finished job (services/media_svc/worker.py); the others
# (held, deferred, undelivered) are results still on their way.
FINISHED = ("delivered", "failed")
WINDOW_SECONDS = 300.0

Totals = Mapping[tuple[str, str], float]


@dataclass(frozen=True, slots=True)
class PoolRate:
    replica: str
    pool: str
    jobs_per_minute: float
    # Failed of finished jobs in the window; None when none finished.
    failure_rate: float | None
    window_seconds: float


def parse_totals(text: str) -> dict[tuple[str, str], float]:
    """(pool, outcome) → count of `media_jobs_total` in a Prometheus text exposition."""
    totals: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        if family.name != "media_jobs":
            continue
        for sample in family.samples:
            if sample.name == "media_jobs_total":
                key = (sample.labels.get("pool", ""), sample.labels.get("outcome", ""))
                totals[key] = totals.get(key, 0.0) + sample.value
    return totals


def rates(replica: str, samples: Sequence[tuple[float, Totals]]) -> list[PoolRate]:
    """Per pool, from the oldest to the newest sample of the window."""
    if len(samples) < 2:
        return []
    (start, first), (end, last) = samples[0], samples[-1]
    elapsed = end - start
    if elapsed <= 0:
        return []
    found = []
    for pool in sorted({pool for pool, _ in last}):
        done = {o: last.get((pool, o), 0.0) - first.get((pool, o), 0.0) for o in FINISHED}
        finished = sum(done.values())
        found.append(
            PoolRate(
                replica,
                pool,
                round(finished / elapsed * 60, 2),
                round(done["failed"] / finished, 3) if finished > 0 else None,
                round(elapsed, 1),
            )
        )
    return found


class MediaRates:
    def __init__(
        self,
        urls: Sequence[str],
        timeout_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._urls = list(urls)
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._clock = clock
        self._samples: dict[str, deque[tuple[float, Totals]]] = {u: deque() for u in urls}

    async def read(self) -> tuple[list[PoolRate], list[str]]:
        """Samples every replica now; the rates of each, and a line per replica whose
        metrics could not be read."""
        found: list[PoolRate] = []
        problems: list[str] = []
        async with aiohttp.ClientSession(timeout=self._timeout) as http:
            for url in self._urls:
                try:
                    async with http.get(url) as response:
                        response.raise_for_status()
                        totals = parse_totals(await response.text())
                except (aiohttp.ClientError, TimeoutError, ValueError) as error:
                    problems.append(f"media_svc metrics {url}: {type(error).__name__} {error}")
                    continue
                found += rates(url, self._remember(url, totals))
        return found, problems

    def _remember(self, url: str, totals: Totals) -> deque[tuple[float, Totals]]:
        now = self._clock()
        samples = self._samples[url]
        if samples and any(v < samples[-1][1].get(k, 0.0) for k, v in totals.items()):
            samples.clear()  # the replica restarted: its counters began again
        samples.append((now, totals))
        while len(samples) > 2 and now - samples[1][0] >= WINDOW_SECONDS:
            samples.popleft()
        return samples
