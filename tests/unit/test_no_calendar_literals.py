"""Guard: no test, benchmark or demo script depends on the date it runs.

A literal date sent through a time-windowed path (window refill, age limits, cleanup,
leases, outbox resend) passes on the day it is written and fails weeks later. Test code
derives its times from the clock (`tests/helpers/clock.py`,
`whatsapp_baileys_server/test/helpers/clock.js`) or injects one. Golden wire fixtures
under `tests/fixtures/` and the real WhatsApp payloads under
`whatsapp_baileys_server/test/fixtures/` (kept as their sources published them) keep
literal dates: there only parsing is checked. A line that
must keep a literal (a date only parsed, never compared with now) carries the marker
`calendar-ok:` followed by the reason.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCANNED = [
    (ROOT / "tests", ("*.py",)),
    (ROOT / "bench", ("*.py",)),
    (ROOT / "scripts", ("*.py", "*.sh", "*.json")),
    (ROOT / "whatsapp_baileys_server" / "test", ("*.js", "*.mjs", "*.json")),
]
EXEMPT_DIRS = (ROOT / "tests" / "fixtures", ROOT / "whatsapp_baileys_server" / "test" / "fixtures")
MARKER = "calendar-ok:"

PATTERNS = {
    "ISO date": re.compile(r"\b(19|20)\d\d-[01]\d-[0-3]\d"),
    "datetime/date constructor with a year": re.compile(r"\b(datetime|date)\(\s*(19|20)\d\d\b"),
    "JavaScript Date from a literal": re.compile(r"new Date\(\s*(['\"`]|\d)|Date\.UTC\("),
    "epoch-seconds literal": re.compile(r"\b1[_]?[4-9]\d\d[_]?\d{3}[_]?\d{3}\b"),
    "epoch-milliseconds literal": re.compile(r"\b1[4-9]\d{11}\b"),
}


def scanned_files() -> list[Path]:
    files: set[Path] = set()
    for folder, globs in SCANNED:
        for glob in globs:
            files.update(
                path
                for path in folder.rglob(glob)
                if "node_modules" not in path.parts
                and not any(path.is_relative_to(exempt) for exempt in EXEMPT_DIRS)
            )
    return sorted(files)


def calendar_literals(text: str) -> list[str]:
    """Lines of `text` holding a date literal, as 'line N: kind: text'."""
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        if MARKER in line:
            continue
        for kind, pattern in PATTERNS.items():
            if pattern.search(line):
                found.append(f"line {number}: {kind}: {line.strip()[:120]}")
                break
    return found


def test_the_guard_sees_each_kind_of_literal() -> None:
    samples = [
        '"originatingTime": "2026-11-21T07:30:15Z",',
        "T0 = datetime(2025, 1, 1, tzinfo=UTC)",
        'timestampFromDate(new Date("2026-11-21T07:30:15Z"))',
        "message.originating_time.FromSeconds(1_700_000_000)",
        "export const TS = 1795246215;",
        "const at = 1795246215000;",
    ]
    for sample in samples:
        assert calendar_literals(sample), sample
    assert calendar_literals("x = 1_000_000  # a count, not a time") == []
    assert calendar_literals('"2026-11-21T07:30:15Z"  # calendar-ok: parsing only') == []


def test_the_guard_scans_the_test_trees() -> None:
    names = {path.name for path in scanned_files()}
    assert {"test_sharded_pipeline.py", "handler.test.js", "clock.py", "clock.js"} <= names
    assert not any(path.is_relative_to(ROOT / "tests" / "fixtures") for path in scanned_files())


@pytest.mark.parametrize("path", scanned_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_calendar_literal(path: Path) -> None:
    if path == Path(__file__):
        return  # its samples are the literals it looks for
    found = calendar_literals(path.read_text(encoding="utf-8", errors="replace"))
    assert not found, (
        f"{path.relative_to(ROOT)} depends on the calendar; derive the time from the clock "
        "(tests/helpers/clock.py or test/helpers/clock.js):\n" + "\n".join(found)
    )
