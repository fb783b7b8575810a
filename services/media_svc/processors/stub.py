"""The Phase-1 stub: waits a configured time and returns fixed text (load tests, defaults)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from services.common.store import MediaJob
from services.media_svc.processors.base import (
    ProcessingOutcome,
    ProcessingSuccess,
    Processor,
    TransientProcessingError,
    kind_label,
    option_bool,
    option_number,
    option_string,
    reject_unknown_options,
)

_OPTIONS = {"delay_seconds", "text", "isolated", "transient_failures"}


class StubProcessor(Processor):
    """Options: `delay_seconds` (default 0), `text` (default names the kind),
    `isolated` (run in the CPU process pool, to exercise that path; default false),
    `transient_failures` (raise TransientProcessingError on the first N attempts)."""

    def __init__(self, options: Mapping[str, Any]) -> None:
        super().__init__(options)
        reject_unknown_options(options, _OPTIONS, "stub")
        self.delay_seconds = option_number(options, "delay_seconds", 0.0)
        self.text = option_string(options, "text", "")
        self.isolated = option_bool(options, "isolated", False)
        self.transient_failures = int(option_number(options, "transient_failures", 0))

    @property
    def cpu_bound(self) -> bool:
        return self.isolated

    def _text(self, job: MediaJob) -> ProcessingOutcome:
        if job.attempts <= self.transient_failures:
            raise TransientProcessingError(
                f"stub: simulated transient failure on attempt {job.attempts}"
            )
        return ProcessingSuccess(self.text or f"[{kind_label(job.media_kind)} received]")

    async def process(self, job: MediaJob, staged_file: Path | None) -> ProcessingOutcome:
        if self.delay_seconds:
            await asyncio.sleep(self.delay_seconds)
        return self._text(job)

    def process_blocking(self, job: MediaJob, staged_file: Path | None) -> ProcessingOutcome:
        if self.delay_seconds:
            time.sleep(self.delay_seconds)
        return self._text(job)
