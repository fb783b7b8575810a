"""bench/RESULTS.md is what bench/run_all.py writes, word for word: regenerating it from
the outputs it records (each bench's output, duration, load and exit status) gives the
same text, so nothing edited by hand is lost on the next `make bench` (only the run's
date and the machine line are the run's own). Runs no benchmark."""

from __future__ import annotations

import re
from pathlib import Path

from bench.run_all import Step, steps, write_results

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "bench" / "RESULTS.md"
_HEADER = re.compile(
    r"`(?P<command>[^`]+)` — (?P<status>ok|exit \S+), (?P<seconds>\d+) s, load average before"
    r" (?P<before>[\d. /]+), after (?P<after>[\d. /]+)\n\n```\n(?P<output>.*?)\n```\n",
    re.DOTALL,
)
RUN_OWN = ("- run finished:", "- machine:")


def _recorded(text: str) -> dict[str, Step]:
    # The soak's length is the run's choice (`--soak-seconds`): read it from the record.
    soak = re.search(r"`\S+ bench/soak\.py --seconds (\d+)`", text)
    assert soak is not None, "no soak in RESULTS.md"
    run = steps(quick=False, soak_seconds=int(soak[1]))
    for key, step in run.items():
        start = text.index(f"\n## {step.title}\n")
        found = _HEADER.search(text, start)
        assert found is not None and found["command"] == step.command, key
        status = found["status"]
        step.exit_code = 0 if status == "ok" else int(status.split()[1])
        step.seconds = float(found["seconds"])
        step.load_before, step.load_after = found["before"], found["after"]
        step.output = found["output"]
        for line in step.output.splitlines():
            if line.startswith("RESULT "):
                step.result = dict(p.split("=", 1) for p in line.split()[1:] if "=" in p)
    return run


def test_results_md_is_exactly_what_the_generator_writes(tmp_path: Path) -> None:
    recorded = RESULTS.read_text()
    regenerated = tmp_path / "RESULTS.md"
    write_results(regenerated, _recorded(recorded), total_seconds=0)
    ours = [line for line in regenerated.read_text().splitlines() if not line.startswith(RUN_OWN)]
    theirs = [line for line in recorded.splitlines() if not line.startswith(RUN_OWN)]
    differing = [(a, b) for a, b in zip(theirs, ours, strict=False) if a != b]
    assert not differing, f"RESULTS.md differs from the generator's text: {differing[:3]}"
    assert len(ours) == len(theirs)
