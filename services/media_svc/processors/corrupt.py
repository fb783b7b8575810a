"""Media Node could not download, decrypt or verify: a marker, never a retry."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from services.common.store import MediaJob
from services.media_svc.processors.base import (
    ProcessingFailure,
    ProcessingOutcome,
    Processor,
    kind_label,
    reject_unknown_options,
)


class CorruptProcessor(Processor):
    """No options. Marker: `[Corrupted image: could not be decoded]`; Node's reason
    (the job's condition_detail) goes to the failed job's error, not to the user."""

    def __init__(self, options: Mapping[str, Any]) -> None:
        super().__init__(options)
        reject_unknown_options(options, set(), "corrupt")

    async def process(self, job: MediaJob, staged_file: Path | None) -> ProcessingOutcome:
        return ProcessingFailure(
            reason="corrupt",
            marker=f"[Corrupted {kind_label(job.media_kind)}: could not be decoded]",
            detail=job.condition_detail,
        )
