"""Media processors: the contract (`contract.py`), built-ins, and the name registry.

The real processors import their engines lazily, in worker processes only, so importing
them here costs nothing heavy (tests/unit/test_heavy_imports.py checks it).
"""

from services.media_svc.processors.audio import AudioProcessor
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
from services.media_svc.processors.document import DocumentProcessor
from services.media_svc.processors.image import ImageProcessor
from services.media_svc.processors.registry import ProcessorRegistry, default_registry
from services.media_svc.processors.sticker import StickerProcessor
from services.media_svc.processors.video import VideoProcessor

__all__ = [
    "AsyncProcessor",
    "AudioProcessor",
    "BlockingProcessor",
    "DocumentProcessor",
    "ImageProcessor",
    "ProcessingFailure",
    "ProcessingOutcome",
    "ProcessingSuccess",
    "ProcessorInput",
    "ProcessorLimits",
    "ProcessorRegistry",
    "StickerProcessor",
    "TransientProcessingError",
    "VideoProcessor",
    "default_registry",
]
