"""How much memory one media worker process may take: the one place the built-in pools'
address-space caps (RLIMIT_AS, `memory_limit_mb`) come from, and what the media_svc
pods' memory limits are checked against (tests/deploy/test_worker_memory.py).

RLIMIT_AS bounds a process's address space, which is never below its resident memory.
A pod whose memory limit is at least the sum of its worker processes' caps plus the
parent can therefore never meet the kernel's OOM killer before a worker meets its own
cap, and a job over the cap ends as the "too large to process" marker (a MemoryError in
the worker), not as a killed process retried into "could not be processed".

Measured figures, per worker process with its engine loaded and one job done:
- resident peak (`bench/processors.py`, bench/RESULTS.md "Media engines … worker
  memory"): audio 381 MB, video 606 MB, image 463 MB, document 89 MB;
- address space: Whisper base int8 (CTranslate2) reserves about 1.8 GB for a 440 MB
  resident worker (measured when the speech pools were added, routing.py); an OCR worker
  about 1 GB for a 1024x768 image and 1.9 GB at the default `ocr_max_side` of 2000 px,
  while at 1.4 GiB a 2560x2560 page already ends as "too large" (README, "Vision and
  document processors"); a document worker 82 MiB after loading (VmPeak), whose largest
  input is a DOCX part of 32 MiB XML that lxml holds as a tree many times that size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# A cap leaves this much above the measured address space (thread stacks and arenas
# grow with the input), rounded up to whole steps.
HEADROOM = 1.1
STEP_MIB = 256
# The media_svc parent process (event loop, gRPC, store client): 64 MB resident in the
# soak (bench/RESULTS.md), with room for request buffers. It runs no RLIMIT_AS.
PARENT_MIB = 256

_GB = 1000**3 / 2**20  # decimal gigabytes, as the measurements were written, in MiB


@dataclass(frozen=True, slots=True)
class WorkerMemory:
    """A processor's measured worker memory, in MiB."""

    resident_peak_mib: float
    address_space_mib: float

    @property
    def cap_mib(self) -> int:
        """The pool's RLIMIT_AS: the measured address space with headroom."""
        return math.ceil(self.address_space_mib * HEADROOM / STEP_MIB) * STEP_MIB


_WHISPER = 1.8 * _GB
_OCR_AT_DEFAULT_SIDE = 1.9 * _GB
# Per processor name (services.media_svc.processors.registry).
MEASURED: dict[str, WorkerMemory] = {
    "audio": WorkerMemory(resident_peak_mib=381, address_space_mib=_WHISPER),
    # Whisper and OCR engines live in the same process: their reservations add up.
    "video": WorkerMemory(resident_peak_mib=606, address_space_mib=_WHISPER + _OCR_AT_DEFAULT_SIDE),
    "image": WorkerMemory(resident_peak_mib=463, address_space_mib=_OCR_AT_DEFAULT_SIDE),
    "sticker": WorkerMemory(resident_peak_mib=463, address_space_mib=_OCR_AT_DEFAULT_SIDE),
    # 82 MiB loaded, plus lxml's tree of a 32 MiB DOCX part (about ten times the XML).
    "document": WorkerMemory(resident_peak_mib=89, address_space_mib=82 + 10 * 32 * 2),
}


def cap_mib(processor: str) -> int:
    """The address-space cap of one worker process of a built-in blocking processor."""
    return MEASURED[processor].cap_mib


def pod_memory_mib(workers: dict[str, int]) -> int:
    """What a pod running `workers` (processor → processes) needs as its memory limit."""
    return PARENT_MIB + sum(cap_mib(p) * n for p, n in workers.items())
