"""Media Node could not download, decrypt or verify: a marker, never a retry."""

from __future__ import annotations

from services.media_svc.processors.base import ProcessingFailure, ProcessingOutcome, kind_label
from services.media_svc.processors.contract import AsyncProcessor, ProcessorInput


class CorruptProcessor(AsyncProcessor):
    """No options. Marker: `[Corrupted image: could not be decoded]`; Node's reason
    (the job's condition_detail) goes to the failed job's error, not to the user."""

    async def process(self, item: ProcessorInput) -> ProcessingOutcome:
        return ProcessingFailure(
            reason="corrupt",
            marker=f"[Corrupted {kind_label(item.media_kind)}: could not be decoded]",
            detail=item.condition_detail,
        )
