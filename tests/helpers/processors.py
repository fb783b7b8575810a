"""Blocking processors for tests of the execution layer: importable top-level classes,
so a pool's worker processes can load them by reference like any real processor."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from services.media_svc.processors.base import (
    ProcessingOutcome,
    ProcessingProgress,
    ProcessingSuccess,
    option_number,
    reject_unknown_options,
)
from services.media_svc.processors.contract import (
    BlockingProcessor,
    ProcessorInput,
    ProcessorLimits,
)

_KEYS = {"sleep_seconds", "allocate_mb", "exit_code"}


@dataclass(frozen=True, slots=True)
class ProbeOptions:
    sleep_seconds: float = 0.0
    allocate_mb: int = 0
    # Non-zero: the process exits with it mid-job, as a crashing engine would.
    exit_code: int = 0
    limits: ProcessorLimits = field(default_factory=ProcessorLimits)


@dataclass(slots=True)
class ProbeEngine:
    pid: int
    loaded_ns: int
    jobs: int = 0


class ProbeProcessor(BlockingProcessor[ProbeOptions, ProbeEngine]):
    """Reports which process and which engine load served each job."""

    @classmethod
    def parse_options(cls, options: Mapping[str, Any]) -> ProbeOptions:
        reject_unknown_options(options, _KEYS | ProcessorLimits.KEYS, "probe")
        return ProbeOptions(
            sleep_seconds=option_number(options, "sleep_seconds", 0.0),
            allocate_mb=int(option_number(options, "allocate_mb", 0)),
            exit_code=int(option_number(options, "exit_code", 0)),
            limits=ProcessorLimits.from_options(options),
        )

    @classmethod
    def load_engine(cls, options: ProbeOptions) -> ProbeEngine:
        return ProbeEngine(os.getpid(), time.monotonic_ns())

    @classmethod
    def process(
        cls, engine: ProbeEngine, options: ProbeOptions, item: ProcessorInput
    ) -> ProcessingOutcome:
        engine.jobs += 1
        if options.exit_code:
            os._exit(options.exit_code)
        if options.allocate_mb:
            block = bytearray(options.allocate_mb * 1024 * 1024)
            del block
        if options.sleep_seconds:
            time.sleep(options.sleep_seconds)
        languages = ",".join(item.languages) or "-"
        return ProcessingSuccess(
            f"pid={engine.pid} engine={engine.loaded_ns} jobs={engine.jobs} "
            f"size={item.size} name={item.file_name or '-'} languages={languages}"
        )


@dataclass(frozen=True, slots=True)
class PartsOptions:
    parts: int = 3
    limits: ProcessorLimits = field(default_factory=ProcessorLimits)


class PartsProcessor(BlockingProcessor[PartsOptions, None]):
    """Does a job in `parts` runs, as long audio is done chunk by chunk: each run returns
    its progress (the parts done, and the checkpoint it resumed from) until the last."""

    @classmethod
    def parse_options(cls, options: Mapping[str, Any]) -> PartsOptions:
        reject_unknown_options(options, {"parts"} | ProcessorLimits.KEYS, "parts")
        return PartsOptions(
            parts=int(option_number(options, "parts", 3, 1)),
            limits=ProcessorLimits.from_options(options),
        )

    @classmethod
    def load_engine(cls, options: PartsOptions) -> None:
        return None

    @classmethod
    def process(
        cls, engine: None, options: PartsOptions, item: ProcessorInput
    ) -> ProcessingOutcome:
        done: list[str] = json.loads(item.checkpoint)["done"] if item.checkpoint else []
        done.append(f"part {len(done)}")
        if len(done) < options.parts:
            remaining = (options.parts - len(done)) / options.parts
            return ProcessingProgress(json.dumps({"done": done}), remaining)
        return ProcessingSuccess("; ".join(done))
