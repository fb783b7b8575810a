"""The Phase-1 stubs: wait a configured time and return fixed text.

For load tests and for exercising both execution paths without engines; never the
product's default for a media pool. `stub` runs on the event loop; `stub_blocking`
runs in the pool's worker processes like a real engine-backed processor.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from services.media_svc.processors.base import (
    ProcessingOutcome,
    ProcessingSuccess,
    TransientProcessingError,
    kind_label,
    option_number,
    option_string,
    reject_unknown_options,
)
from services.media_svc.processors.contract import (
    AsyncProcessor,
    BlockingProcessor,
    ProcessorInput,
    ProcessorLimits,
)

_OPTIONS = frozenset({"delay_seconds", "text", "transient_failures", "allocate_mb"})


@dataclass(frozen=True, slots=True)
class StubOptions:
    """`delay_seconds` (default 0), `text` (default names the kind), `transient_failures`
    (raise TransientProcessingError on the first N attempts), `allocate_mb` (stub_blocking
    only: allocate that much memory in the worker process, for memory-cap drills)."""

    delay_seconds: float = 0.0
    text: str = ""
    transient_failures: int = 0
    allocate_mb: int = 0
    limits: ProcessorLimits = field(default_factory=ProcessorLimits)

    @classmethod
    def parse(cls, options: Mapping[str, Any], processor: str) -> StubOptions:
        reject_unknown_options(options, set(_OPTIONS | ProcessorLimits.KEYS), processor)
        return cls(
            delay_seconds=option_number(options, "delay_seconds", 0.0),
            text=option_string(options, "text", ""),
            transient_failures=int(option_number(options, "transient_failures", 0)),
            allocate_mb=int(option_number(options, "allocate_mb", 0)),
            limits=ProcessorLimits.from_options(options),
        )

    def outcome(self, item: ProcessorInput) -> ProcessingOutcome:
        if item.attempt <= self.transient_failures:
            raise TransientProcessingError(
                f"stub: simulated transient failure on attempt {item.attempt}"
            )
        return ProcessingSuccess(self.text or f"[{kind_label(item.media_kind)} received]")


class StubProcessor(AsyncProcessor):
    OPTIONS = _OPTIONS

    def __init__(self, options: Mapping[str, Any]) -> None:
        super().__init__(options)
        self.settings = StubOptions.parse(options, "stub")

    async def process(self, item: ProcessorInput) -> ProcessingOutcome:
        if self.settings.delay_seconds:
            await asyncio.sleep(self.settings.delay_seconds)
        return self.settings.outcome(item)


class StubBlockingProcessor(BlockingProcessor[StubOptions, None]):
    @classmethod
    def parse_options(cls, options: Mapping[str, Any]) -> StubOptions:
        return StubOptions.parse(options, "stub_blocking")

    @classmethod
    def load_engine(cls, options: StubOptions) -> None:
        return None

    @classmethod
    def process(cls, engine: None, options: StubOptions, item: ProcessorInput) -> ProcessingOutcome:
        if options.allocate_mb:
            # Touched, so it is really taken (as an engine's buffers would be).
            block = bytearray(options.allocate_mb * 1024 * 1024)
            block[::4096] = b"\x01" * len(block[::4096])
            del block
        if options.delay_seconds:
            time.sleep(options.delay_seconds)
        return options.outcome(item)
