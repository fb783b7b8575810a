"""Processor names (the `processor` of a pool definition) → processor types.

A pool switches from `stub` to a real processor by editing its definition, nothing
else. Blocking processor types are sent to the pool's worker processes by reference
(module and qualified name), so they must be importable top-level classes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services.common.errors import InvalidInputError
from services.media_svc.processors.audio import AudioProcessor
from services.media_svc.processors.contract import AsyncProcessor, BlockingProcessor
from services.media_svc.processors.corrupt import CorruptProcessor
from services.media_svc.processors.document import DocumentProcessor
from services.media_svc.processors.image import ImageProcessor
from services.media_svc.processors.sticker import StickerProcessor
from services.media_svc.processors.stub import StubBlockingProcessor, StubProcessor
from services.media_svc.processors.unsupported import UnsupportedProcessor
from services.media_svc.processors.video import VideoProcessor

ProcessorType = type[AsyncProcessor] | type[BlockingProcessor[Any, Any]]


class ProcessorRegistry:
    def __init__(self, types: Mapping[str, ProcessorType]) -> None:
        self._types = dict(types)

    @property
    def names(self) -> list[str]:
        return sorted(self._types)

    def type_of(self, name: str) -> ProcessorType:
        found = self._types.get(name)
        if found is None:
            raise InvalidInputError(
                f"unknown processor {name!r}; available: {', '.join(self.names)}"
            )
        return found


def builtin_types() -> dict[str, ProcessorType]:
    return {
        "image": ImageProcessor,
        "sticker": StickerProcessor,
        "audio": AudioProcessor,
        "video": VideoProcessor,
        "document": DocumentProcessor,
        "corrupt": CorruptProcessor,
        "unsupported": UnsupportedProcessor,
        # Phase-1 stubs: load tests and tests of the execution layer, never a default.
        "stub": StubProcessor,
        "stub_blocking": StubBlockingProcessor,
    }


def default_registry() -> ProcessorRegistry:
    return ProcessorRegistry(builtin_types())
