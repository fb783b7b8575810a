"""Processor names (the `processor` of a pool definition) → factories.

Real processors register here under new names; a pool switches from `stub` to a real
one by editing its definition, nothing else. The registry is rebuilt in worker processes
(CPU-bound runs), so factories must be importable top-level callables.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from services.common.errors import InvalidInputError
from services.media_svc.processors.base import Processor
from services.media_svc.processors.corrupt import CorruptProcessor
from services.media_svc.processors.stub import StubProcessor
from services.media_svc.processors.unsupported import UnsupportedProcessor

ProcessorFactory = Callable[[Mapping[str, Any]], Processor]


class ProcessorRegistry:
    def __init__(self, factories: Mapping[str, ProcessorFactory]) -> None:
        self._factories = dict(factories)

    @property
    def names(self) -> list[str]:
        return sorted(self._factories)

    def factory(self, name: str) -> ProcessorFactory:
        factory = self._factories.get(name)
        if factory is None:
            raise InvalidInputError(
                f"unknown processor {name!r}; available: {', '.join(self.names)}"
            )
        return factory

    def create(self, name: str, options: Mapping[str, Any]) -> Processor:
        """Builds a processor; InvalidInputError for an unknown name or bad options."""
        return self.factory(name)(options)


def builtin_factories() -> dict[str, ProcessorFactory]:
    return {
        "stub": StubProcessor,
        "corrupt": CorruptProcessor,
        "unsupported": UnsupportedProcessor,
    }


def default_registry() -> ProcessorRegistry:
    return ProcessorRegistry(builtin_factories())
