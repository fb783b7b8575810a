"""Media no pool handles, or refused by the bot's staging quota: a marker, never a retry."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from services.common.routing import MediaCondition, base_mime
from services.common.store import MediaJob
from services.media_svc.processors.base import (
    ProcessingFailure,
    ProcessingOutcome,
    Processor,
    job_condition,
    kind_label,
    reject_unknown_options,
)


class UnsupportedProcessor(Processor):
    """No options. Markers: `[Unsupported media: application/zip]`, or for media refused
    by the quota `[Image not received: the bot's media storage is full]` (Node's reason,
    the job's condition_detail, goes to the failed job's error, not to the user)."""

    def __init__(self, options: Mapping[str, Any]) -> None:
        super().__init__(options)
        reject_unknown_options(options, set(), "unsupported")

    async def process(self, job: MediaJob, staged_file: Path | None) -> ProcessingOutcome:
        if job_condition(job) is MediaCondition.OVER_QUOTA:
            label = kind_label(job.media_kind).capitalize()
            return ProcessingFailure(
                reason="over_quota",
                marker=f"[{label} not received: the bot's media storage is full]",
                detail=job.condition_detail,
            )
        mime = base_mime(job.mime_type) or "unknown type"
        return ProcessingFailure(reason="unsupported", marker=f"[Unsupported media: {mime}]")
