"""Throughput of the SQLite store on this machine: claims/s and full job cycles/s.

A cycle is what a media worker does to the store per job: create → claim → complete →
delete. Each figure is measured with one and with two worker processes (each running
CONCURRENCY asyncio tasks, as a media_svc pool does), next to a raw sqlite3 loop on the
same file settings for the ratio. Ends with `RESULT claims_per_s=<n> cycles_per_s=<n>`
(the best of the one- and two-process runs).

    .venv/bin/python bench/store.py [--seconds 3] [--concurrency 32] [--synchronous NORMAL]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# The script's own directory must not be on the path: a bench file named like a stdlib
# module (bench/queue.py) would shadow it. The repository root goes there instead.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

from services.common.store import NewMediaJob  # noqa: E402
from services.common.store.sqlite import SqliteStore  # noqa: E402

POOL = "image"
CLAIM_JOBS_PER_PROCESS = 20_000


def _job() -> NewMediaJob:
    return NewMediaJob(
        media_processing_id=str(uuid.uuid4()),
        bot_id="bench-bot",
        provider_name="whatsapp_baileys",
        correspondent_id="4915100000001@s.whatsapp.net",
        message_id=1,
        sender="bench",
        source="user",
        originating_time=datetime.now(UTC),
        provider_message_id="WA-bench",
        caption="",
        mime_type="image/jpeg",
        media_kind="MEDIA_KIND_IMAGE",
        original_filename=None,
        file_size=1000,
        route="staged|MEDIA_KIND_IMAGE|image/jpeg",
        pool=POOL,
        has_staged_file=True,
    )


def _progress(text: str) -> None:
    print(text, flush=True)


async def _open(path: Path, synchronous: str) -> SqliteStore:
    return await SqliteStore.open(path, synchronous="FULL" if synchronous == "FULL" else "NORMAL")


def _wait_until(start_at: float) -> None:
    time.sleep(max(0.0, start_at - time.time()))


def claim_worker(
    path: Path, synchronous: str, concurrency: int, start_at: float
) -> tuple[int, float]:
    """Claim (and complete) until the queue is empty: (claims, seconds)."""

    async def run() -> tuple[int, float]:
        store = await _open(path, synchronous)
        worker = f"claimer-{multiprocessing.current_process().pid}"
        claims = 0

        async def task() -> None:
            nonlocal claims
            while await store.claim_job([POOL], worker, 300) is not None:
                claims += 1

        _wait_until(start_at)
        started = time.perf_counter()
        await asyncio.gather(*(task() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
        await store.close()
        return claims, elapsed

    return asyncio.run(run())


def cycle_worker(
    path: Path, synchronous: str, concurrency: int, start_at: float, seconds: float
) -> tuple[int, float]:
    """create → claim → complete → delete for `seconds`: (cycles, seconds)."""

    async def run() -> tuple[int, float]:
        store = await _open(path, synchronous)
        worker = f"cycler-{multiprocessing.current_process().pid}"
        cycles = 0
        deadline = start_at + seconds

        async def task() -> None:
            nonlocal cycles
            while time.time() < deadline:
                await store.create_job(_job())
                claim = await store.claim_job([POOL], worker, 300)
                if claim is None:  # another task took ours; it will take another's
                    continue
                job_id = claim.job.media_processing_id
                if await store.complete_job(job_id, claim.token, "bench result") is None:
                    raise RuntimeError(f"lost the lease of {job_id} within 300 s")
                await store.delete_job(job_id)
                cycles += 1

        _wait_until(start_at)
        started = time.perf_counter()
        await asyncio.gather(*(task() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
        await store.close()
        return cycles, elapsed

    return asyncio.run(run())


async def _fill(path: Path, synchronous: str, count: int) -> None:
    store = await _open(path, synchronous)
    try:
        for start in range(0, count, 1000):
            await asyncio.gather(
                *(store.create_job(_job()) for _ in range(min(1000, count - start)))
            )
    finally:
        await store.close()


def _fresh(directory: Path, name: str, synchronous: str) -> Path:
    path = directory / f"{name}.sqlite3"

    async def create() -> None:
        await (await _open(path, synchronous)).close()

    asyncio.run(create())
    return path


def _run_processes(
    target: Callable[..., tuple[int, float]], args_per_process: list[tuple[Any, ...]]
) -> list[tuple[int, float]]:
    context = multiprocessing.get_context("spawn")
    with context.Pool(len(args_per_process)) as pool:
        pending = [pool.apply_async(target, args) for args in args_per_process]
        return [p.get(timeout=90) for p in pending]


def raw_baseline(directory: Path, synchronous: str, seconds: float) -> tuple[float, float]:
    """Plain sqlite3, one connection, autocommit: (claim-and-done/s, full cycles/s)."""
    path = _fresh(directory, "raw", synchronous)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(f"PRAGMA synchronous={synchronous}")
    columns = (
        "media_processing_id, bot_id, provider_name, correspondent_id, message_id, sender,"
        " source, originating_time, provider_message_id, caption, mime_type, media_kind,"
        " original_filename, file_size, route, pool, has_staged_file, status, attempts,"
        " available_at, created_at, updated_at"
    )
    insert = (
        f"INSERT INTO media_processing_jobs ({columns}) VALUES"
        " (?, 'b', 'p', 'c', 1, 's', 'user', 0, 'w', '', 'image/jpeg', 'K', NULL, 1, 'r',"
        " 'image', 1, 'pending', 0, ?, ?, ?)"
    )
    claim = (
        "UPDATE media_processing_jobs SET status = 'processing', claimed_by = 'raw',"
        " lease_expires_at = ?1 + 300000, attempts = attempts + 1, fence = fence + 1,"
        " updated_at = ?1"
        " WHERE seq = (SELECT seq FROM media_processing_jobs WHERE status = 'pending'"
        " AND pool = 'image' AND available_at <= ?1 ORDER BY created_at, seq LIMIT 1)"
        " RETURNING media_processing_id, fence"
    )
    complete = (
        "UPDATE media_processing_jobs SET status = 'completed', result = 'r', updated_at = ?"
        " WHERE media_processing_id = ? AND status = 'processing' AND fence = ?"
    )
    delete = "DELETE FROM media_processing_jobs WHERE media_processing_id = ?"

    now = time.time_ns() // 1_000_000
    conn.execute("BEGIN")
    conn.executemany(insert, ((str(uuid.uuid4()), now, now, now) for _ in range(200_000)))
    conn.execute("COMMIT")
    done = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        now = time.time_ns() // 1_000_000
        job_id, _ = conn.execute(claim, (now,)).fetchone()
        conn.execute(delete, (job_id,))
        done += 1
    claim_and_done = done / (time.perf_counter() - started)
    conn.execute("DELETE FROM media_processing_jobs")

    cycles = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        now = time.time_ns() // 1_000_000
        conn.execute(insert, (str(uuid.uuid4()), now, now, now))
        job_id, fence = conn.execute(claim, (now,)).fetchone()
        conn.execute(complete, (now, job_id, fence))
        conn.execute(delete, (job_id,))
        cycles += 1
    full_cycles = cycles / (time.perf_counter() - started)
    conn.close()
    return claim_and_done, full_cycles


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each timed run")
    parser.add_argument("--concurrency", type=int, default=32, help="asyncio tasks per process")
    parser.add_argument("--synchronous", choices=["NORMAL", "FULL"], default="NORMAL")
    args = parser.parse_args()
    sync = args.synchronous

    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
        directory = Path(tmp)
        _progress(
            f"SQLite {sqlite3.sqlite_version}, journal_mode=WAL, synchronous={sync}"
            f" (durability on), {args.concurrency} tasks per process, {args.seconds:.0f} s runs"
        )
        _progress("raw sqlite3 baseline (one connection, autocommit statements) ...")
        raw_claims, raw_cycles = raw_baseline(directory, sync, args.seconds)
        _progress(f"  raw claim+delete:                    {raw_claims:9,.0f} /s")
        _progress(f"  raw create+claim+complete+delete:    {raw_cycles:9,.0f} /s")

        claims: dict[int, float] = {}
        cycles: dict[int, float] = {}
        for processes in (1, 2):
            path = _fresh(directory, f"claims{processes}", sync)
            total = CLAIM_JOBS_PER_PROCESS * processes
            _progress(f"claims, {processes} process(es): filling {total:,} jobs ...")
            asyncio.run(_fill(path, sync, total))
            start_at = time.time() + 1.5  # covers the spawn of the workers
            results = _run_processes(
                claim_worker, [(path, sync, args.concurrency, start_at)] * processes
            )
            claimed = sum(n for n, _ in results)
            if claimed != total:
                raise SystemExit(
                    f"claimed {claimed} of {total} jobs: the store lost or doubled jobs"
                )
            claims[processes] = claimed / max(seconds for _, seconds in results)
            _progress(
                f"  adapter claims/s, {processes} process(es):    {claims[processes]:9,.0f} /s"
            )

        for processes in (1, 2):
            path = _fresh(directory, f"cycles{processes}", sync)
            _progress(f"cycles, {processes} process(es): running {args.seconds:.0f} s ...")
            start_at = time.time() + 1.5
            results = _run_processes(
                cycle_worker,
                [(path, sync, args.concurrency, start_at, args.seconds)] * processes,
            )
            cycles[processes] = sum(n for n, _ in results) / max(s for _, s in results)
            _progress(
                f"  adapter cycles/s, {processes} process(es):    {cycles[processes]:9,.0f} /s"
            )

        path = _fresh(directory, "latency", sync)
        _progress(
            f"cycles, 1 process, 1 task (no overlap to batch): running {args.seconds:.0f} s ..."
        )
        [(serial, serial_seconds)] = _run_processes(
            cycle_worker, [(path, sync, 1, time.time() + 1.5, args.seconds)]
        )
        _progress(f"  adapter cycles/s, 1 task:               {serial / serial_seconds:9,.0f} /s")

        best_claims = max(claims.values())
        best_cycles = max(cycles.values())
        _progress(
            f"ratio adapter/raw: claims {best_claims / raw_claims:.2f}"
            f" (vs raw claim+delete), cycles {best_cycles / raw_cycles:.2f};"
            " target ≥ 5,000 cycles/s"
        )
        print(f"RESULT claims_per_s={best_claims:.0f} cycles_per_s={best_cycles:.0f}", flush=True)


if __name__ == "__main__":
    main()
