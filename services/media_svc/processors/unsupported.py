"""Media no pool handles, or refused by the bot's staging quota: a marker, never a retry."""

from __future__ import annotations

from services.common.vocabulary import MediaCondition
from services.media_svc.processors.base import ProcessingFailure, ProcessingOutcome, kind_label
from services.media_svc.processors.contract import AsyncProcessor, ProcessorInput
from services.media_svc.processors.text import sanitize_mime


class UnsupportedProcessor(AsyncProcessor):
    """No options. Markers: `[Unsupported media: application/zip]` (the sender's MIME
    type sanitized: anything but `type/subtype` reads `unknown type`), or for media
    refused by the quota `[Image not received: the bot's media storage is full]` (Node's
    reason, the job's condition_detail, goes to the failed job's error only)."""

    async def process(self, item: ProcessorInput) -> ProcessingOutcome:
        if item.condition is MediaCondition.OVER_QUOTA:
            label = kind_label(item.media_kind).capitalize()
            return ProcessingFailure(
                reason="over_quota",
                marker=f"[{label} not received: the bot's media storage is full]",
                detail=item.condition_detail,
            )
        return ProcessingFailure(
            reason="unsupported", marker=f"[Unsupported media: {sanitize_mime(item.mime)}]"
        )
