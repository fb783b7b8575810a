"""What a long-running service's memory grows by, for the soak (issue 27).

Off unless `MEMORY_TRACE_PATH` is set (tracemalloc slows a process several times over).
When set, a daemon thread takes a tracemalloc snapshot after `MEMORY_TRACE_SECONDS`
(the warm-up: bounded memories fill first), then every interval appends to the file the
allocation sites that grew most since that first snapshot, as one JSON line: an
allocation that keeps growing there after every bounded memory is full is the leak.
"""

from __future__ import annotations

import json
import logging
import threading
import tracemalloc
from collections.abc import Mapping
from pathlib import Path

from services.common.env import env_float

log = logging.getLogger(__name__)

#: Frames kept per allocation: enough to see which caller of a shared helper it was.
FRAMES = 8
#: Allocation sites per report.
TOP = 25


class MemoryTrace:
    """The tracing thread; `stop()` ends it and tracemalloc (tests, or a clean exit)."""

    def __init__(self, path: Path, interval: float) -> None:
        self.path = path
        self.interval = interval
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memory-trace", daemon=True)

    def start(self) -> None:
        tracemalloc.start(FRAMES)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join()
        tracemalloc.stop()

    def _run(self) -> None:
        if self._stopping.wait(self.interval):  # the warm-up
            return
        baseline = tracemalloc.take_snapshot()
        while not self._stopping.wait(self.interval):
            self._report(baseline)

    def _report(self, baseline: tracemalloc.Snapshot) -> None:
        snapshot = tracemalloc.take_snapshot()
        grown = [s for s in snapshot.compare_to(baseline, "traceback") if s.size_diff > 0]
        report = {
            "traced_mb": round(tracemalloc.get_traced_memory()[0] / 1e6, 2),
            "top": [
                {
                    "kb": round(stat.size_diff / 1e3, 1),
                    "blocks": stat.count_diff,
                    "where": [f"{f.filename}:{f.lineno}" for f in stat.traceback][::-1],
                }
                for stat in grown[:TOP]
            ],
        }
        with self.path.open("a") as out:
            out.write(json.dumps(report) + "\n")


def start_memory_trace(environ: Mapping[str, str]) -> MemoryTrace | None:
    """Starts tracing when `MEMORY_TRACE_PATH` is set; None otherwise."""
    path = environ.get("MEMORY_TRACE_PATH")
    if not path:
        return None
    trace = MemoryTrace(Path(path), env_float(environ, "MEMORY_TRACE_SECONDS", 60.0, minimum=0.1))
    trace.start()
    log.warning("tracing memory allocations into %s (slow; for diagnosis only)", path)
    return trace
