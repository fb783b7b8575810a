"""Media processors: one interface (`Processor`), built-ins, and the name registry.

The real processors (image, sticker, document) import their engines lazily, in worker
processes only, so importing them here costs nothing heavy.
"""

from services.media_svc.processors.base import (
    ProcessingFailure,
    ProcessingOutcome,
    ProcessingSuccess,
    Processor,
    TransientProcessingError,
)
from services.media_svc.processors.document import DocumentProcessor
from services.media_svc.processors.image import ImageProcessor
from services.media_svc.processors.registry import ProcessorRegistry, default_registry
from services.media_svc.processors.sticker import StickerProcessor

__all__ = [
    "DocumentProcessor",
    "ImageProcessor",
    "ProcessingFailure",
    "ProcessingOutcome",
    "ProcessingSuccess",
    "Processor",
    "ProcessorRegistry",
    "StickerProcessor",
    "TransientProcessingError",
    "default_registry",
]
