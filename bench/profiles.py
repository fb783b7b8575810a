"""py-spy profiles of running services: sampled while a bench drives them, summarised as
the functions that hold the most samples (self time, and inclusive time of the project's
own functions), so RESULTS.md can say what bounds a figure."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections import Counter
from pathlib import Path

PY_SPY = Path(__file__).resolve().parent.parent / ".venv" / "bin" / "py-spy"


class Profiler:
    """`py-spy record` of each pid for `seconds`, raw (collapsed stacks) into `directory`."""

    def __init__(self, directory: Path, pids: dict[str, int], seconds: float) -> None:
        self.directory = directory
        self.pids = pids
        self.seconds = seconds
        # Samples per second; BENCH_PROFILE_RATE raises it for a closer look.
        self.rate = os.environ.get("BENCH_PROFILE_RATE", "50")
        self._procs: list[asyncio.subprocess.Process] = []

    @staticmethod
    def available() -> bool:
        return PY_SPY.exists() or shutil.which("py-spy") is not None

    async def start(self) -> None:
        binary = str(PY_SPY) if PY_SPY.exists() else "py-spy"
        self.directory.mkdir(parents=True, exist_ok=True)
        for name, pid in self.pids.items():
            argv = [binary, "record", "--nonblocking", "-r", self.rate, "-f", "raw"]
            argv += ["-d", str(max(1, int(self.seconds))), "-p", str(pid)]
            argv += ["-o", str(self.directory / f"{name}.txt")]
            self._procs.append(
                await asyncio.create_subprocess_exec(
                    *argv,
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=asyncio.subprocess.DEVNULL,
                )
            )

    async def finish(self) -> dict[str, str]:
        """Waits for the recordings; a summary per service (empty when py-spy failed)."""
        for proc in self._procs:
            await proc.wait()
        return {name: summarise(self.directory / f"{name}.txt") for name in self.pids}


def summarise(path: Path, top: int = 6) -> str:
    if not path.exists():
        return "(no profile: py-spy could not attach)"
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        total += count
        frames = stack.split(";")
        own[frames[-1]] += count
        for frame in set(frames):
            if "services/" in frame:
                inclusive[frame] += count
    if not total:
        return "(no samples)"
    lines = [f"{total} samples; self time:"]
    lines += [f"  {c / total:6.1%} {f}" for f, c in own.most_common(top)]
    lines.append("  inclusive, the project's functions:")
    lines += [f"  {c / total:6.1%} {f}" for f, c in inclusive.most_common(top + 4)]
    return "\n".join(lines)
