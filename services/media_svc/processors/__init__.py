"""Media processors: one interface (`Processor`), built-ins, and the name registry."""

from services.media_svc.processors.base import (
    ProcessingFailure,
    ProcessingOutcome,
    ProcessingSuccess,
    Processor,
    TransientProcessingError,
)
from services.media_svc.processors.registry import ProcessorRegistry, default_registry

__all__ = [
    "ProcessingFailure",
    "ProcessingOutcome",
    "ProcessingSuccess",
    "Processor",
    "ProcessorRegistry",
    "TransientProcessingError",
    "default_registry",
]
