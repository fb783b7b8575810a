"""The expected cost that orders a pool's claims: grows with the staged size, bounded,
per pool overridable, nothing for processors that do no real work."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.common.errors import InvalidInputError
from services.common.job_cost import SECONDS_PER_MIB, claim_delay_ms
from services.common.routing import ProcessorDefinitions, default_definitions
from services.common.store import MAX_CLAIM_DELAY_MS

_MIB = 1 << 20


@given(st.integers(0, 1 << 40), st.integers(0, 1 << 40))
def test_a_bigger_file_never_ranks_before_a_smaller_one(a: int, b: int) -> None:
    audio = default_definitions().pool("Audio")
    small, big = sorted((a, b))
    assert 0 <= claim_delay_ms(audio, small) <= claim_delay_ms(audio, big) <= MAX_CLAIM_DELAY_MS


def test_a_100_s_voice_note_waits_behind_5_s_ones_arriving_within_its_cost() -> None:
    audio = default_definitions().pool("Audio")
    # WhatsApp's Opus voice notes are about 2 KB per second.
    long, short = claim_delay_ms(audio, 100 * 2_000), claim_delay_ms(audio, 5 * 2_000)
    assert long == round(100 * 2_000 / _MIB * SECONDS_PER_MIB["audio"] * 1000)
    assert long - short > 10_000


def test_markers_cost_nothing_and_a_pool_may_override_its_processor() -> None:
    definitions = default_definitions()
    for name in ("Corrupt", "Unsupported"):
        assert claim_delay_ms(definitions.pool(name), 50 * _MIB) == 0
    tuned = replace(definitions.pool("Document"), seconds_per_mib=1.5)
    assert claim_delay_ms(tuned, 2 * _MIB) == 3_000
    assert claim_delay_ms(replace(tuned, seconds_per_mib=0.0), 2 * _MIB) == 0


def test_seconds_per_mib_round_trips_and_is_validated() -> None:
    document = default_definitions().to_document()
    document["pools"][0]["seconds_per_mib"] = 2.5
    parsed = ProcessorDefinitions.from_document(document)
    assert parsed.pools[0].seconds_per_mib == 2.5
    assert parsed.to_document() == document
    for bad in (-1, 3601, True, "fast"):
        document["pools"][0]["seconds_per_mib"] = bad
        with pytest.raises(InvalidInputError, match="seconds_per_mib"):
            ProcessorDefinitions.from_document(document)


def test_the_readme_states_the_built_in_estimates_the_code_uses() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    found = re.search(r"built-in estimates per processor: ([^;]+);", readme.replace("\n", " "))
    assert found is not None
    stated = {name: float(value) for name, value in re.findall(r"(\w+) (\d+)", found[1])}
    assert stated == dict(SECONDS_PER_MIB)
