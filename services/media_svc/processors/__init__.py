"""Media processors: the contract (`contract.py`), built-ins, and the name registry."""

from services.media_svc.processors.base import (
    ProcessingFailure,
    ProcessingOutcome,
    ProcessingSuccess,
    TransientProcessingError,
)
from services.media_svc.processors.contract import (
    AsyncProcessor,
    BlockingProcessor,
    ProcessorInput,
    ProcessorLimits,
)
from services.media_svc.processors.registry import ProcessorRegistry, default_registry

__all__ = [
    "AsyncProcessor",
    "BlockingProcessor",
    "ProcessingFailure",
    "ProcessingOutcome",
    "ProcessingSuccess",
    "ProcessorInput",
    "ProcessorLimits",
    "ProcessorRegistry",
    "TransientProcessingError",
    "default_registry",
]
