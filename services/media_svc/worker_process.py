"""The side of a blocking pool that runs inside its worker processes.

Each pool has its own processes (spawned, so they inherit no event loop, sockets or
locks). `initialize` runs once per process: it caps the address space (RLIMIT_AS) and
loads the processor's engine, which every job that process runs then reuses. The engine
must live somewhere for the life of the process; a module-level holder is the only
place a ProcessPoolExecutor initializer can leave it, and it exists only in these
child processes (the parent never calls `initialize`).
"""

from __future__ import annotations

import logging
import os
import resource
import time
from dataclasses import dataclass
from typing import Any

from services.media_svc.processors.base import (
    ProcessingFailure,
    ProcessingOutcome,
    TransientProcessingError,
    kind_label,
)
from services.media_svc.processors.contract import BlockingProcessor, ProcessorInput

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Loaded:
    processor: type[BlockingProcessor[Any, Any]]
    options: Any
    engine: Any = None
    load_error: str | None = None
    load_seconds: float = 0.0


_PROCESS: dict[str, _Loaded] = {}


def initialize(
    processor: type[BlockingProcessor[Any, Any]], options: Any, memory_limit_bytes: int
) -> None:
    """ProcessPoolExecutor initializer: memory cap, then the engine, once."""
    if memory_limit_bytes > 0:
        resource.setrlimit(resource.RLIMIT_AS, (memory_limit_bytes, memory_limit_bytes))
    loaded = _Loaded(processor, options)
    started = time.perf_counter()
    try:
        loaded.engine = processor.load_engine(options)
    except BaseException as exc:  # reported on every job of this process, then retried
        loaded.load_error = f"{type(exc).__name__}: {exc}"
    loaded.load_seconds = time.perf_counter() - started
    _PROCESS["loaded"] = loaded


def warm() -> tuple[int, float]:
    """This process's pid and how long its engine took to load; raises when the load
    failed, with the reason."""
    loaded = _PROCESS["loaded"]
    if loaded.load_error is not None:
        raise TransientProcessingError(f"engine failed to load: {loaded.load_error}")
    # Keeps this process busy briefly so concurrent warm-ups reach distinct processes.
    time.sleep(0.2)
    return os.getpid(), loaded.load_seconds


def run(item: ProcessorInput) -> ProcessingOutcome:
    loaded = _PROCESS["loaded"]
    if loaded.load_error is not None:
        raise TransientProcessingError(f"engine failed to load: {loaded.load_error}")
    try:
        return loaded.processor.process(loaded.engine, loaded.options, item)
    except MemoryError:
        # The RLIMIT_AS cap: this input needs more memory than the pool allows.
        label = kind_label(item.media_kind).capitalize()
        return ProcessingFailure(
            reason="too_large",
            marker=f"[{label} not processed: too large to process]",
            detail="worker memory limit reached",
        )
