"""Processor definitions: the routing table from a media job to its pool.

The table lives in the store as the document `_mediaProcessorDefinitions` of
`bot_configurations`. It is resolved once, when a job is created (the job records its
pool so a claim is one indexed query), and again by media_svc for pending jobs when an
operator changes the table.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from services.common.errors import InvalidInputError
from services.common.vocabulary import MEDIA_KINDS, MediaCondition, RouteKey, base_mime
from services.common.worker_memory import cap_mib


@dataclass(frozen=True)
class Route:
    """Matches jobs by condition, kind and base MIME type; an empty set matches any."""

    condition: MediaCondition = MediaCondition.STAGED
    media_kinds: frozenset[str] = frozenset()
    mime_types: frozenset[str] = frozenset()

    def matches(self, condition: MediaCondition, media_kind: str, mime: str) -> bool:
        return (
            condition == self.condition
            and (not self.media_kinds or media_kind in self.media_kinds)
            and (not self.mime_types or mime in self.mime_types)
        )

    def overlaps(self, other: Route) -> bool:
        def meet(a: frozenset[str], b: frozenset[str]) -> bool:
            return not a or not b or bool(a & b)

        return (
            self.condition == other.condition
            and meet(self.media_kinds, other.media_kinds)
            and meet(self.mime_types, other.mime_types)
        )


@dataclass(frozen=True)
class PoolDefinition:
    """One worker pool: which processor it runs, with which options and concurrency."""

    name: str
    processor: str
    concurrency: int = 1
    options: Mapping[str, Any] = field(default_factory=dict)
    routes: tuple[Route, ...] = ()
    fallback: bool = False
    # Per-pool run settings; None takes the replica's environment default
    # (MEDIA_PROCESSOR_TIMEOUT_SECONDS, MEDIA_MAX_ATTEMPTS, MEDIA_WORKER_MEMORY_LIMIT_MB).
    timeout_seconds: float | None = None
    max_attempts: int | None = None
    memory_limit_mb: int | None = None
    # Expected processing seconds per MiB of input, which orders claims inside the pool
    # (services/common/job_cost.py); None takes the processor's built-in estimate.
    seconds_per_mib: float | None = None


@dataclass(frozen=True)
class ProcessorDefinitions:
    """A validated routing table: every (condition, kind, mime) resolves to one pool."""

    pools: tuple[PoolDefinition, ...]

    def resolve(self, condition: MediaCondition, media_kind: str, mime_type: str) -> str:
        mime = base_mime(mime_type)
        for pool in self.pools:
            if any(route.matches(condition, media_kind, mime) for route in pool.routes):
                return pool.name
        return self.fallback_pool.name

    def route(self, key: RouteKey) -> str:
        return self.resolve(key.condition, key.media_kind, key.mime_type)

    @property
    def fallback_pool(self) -> PoolDefinition:
        return next(pool for pool in self.pools if pool.fallback)

    def pool(self, name: str) -> PoolDefinition:
        for pool in self.pools:
            if pool.name == name:
                return pool
        raise KeyError(name)

    def to_document(self) -> dict[str, Any]:
        return {
            "pools": [
                {
                    "name": p.name,
                    "processor": p.processor,
                    "concurrency": p.concurrency,
                    "options": dict(p.options),
                    "fallback": p.fallback,
                    **{
                        key: value
                        for key, value in (
                            ("timeout_seconds", p.timeout_seconds),
                            ("max_attempts", p.max_attempts),
                            ("memory_limit_mb", p.memory_limit_mb),
                            ("seconds_per_mib", p.seconds_per_mib),
                        )
                        if value is not None
                    },
                    "routes": [
                        {
                            "condition": r.condition.value,
                            "media_kinds": sorted(r.media_kinds),
                            "mime_types": sorted(r.mime_types),
                        }
                        for r in p.routes
                    ],
                }
                for p in self.pools
            ]
        }

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> ProcessorDefinitions:
        """Parses and validates; raises InvalidInputError naming the first defect."""
        raw_pools = document.get("pools")
        if not isinstance(raw_pools, list) or not raw_pools:
            raise InvalidInputError("definitions: 'pools' must be a non-empty list")
        pools = tuple(_parse_pool(i, raw) for i, raw in enumerate(raw_pools))
        definitions = cls(pools)
        definitions.validate()
        return definitions

    def validate(self) -> None:
        names = [p.name for p in self.pools]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise InvalidInputError(f"definitions: duplicate pool names {duplicates}")
        fallbacks = [p.name for p in self.pools if p.fallback]
        if len(fallbacks) != 1:
            raise InvalidInputError(
                f"definitions: exactly one pool must have fallback=true, found {fallbacks}"
            )
        routed = [(p.name, r) for p in self.pools for r in p.routes]
        for i, (name_a, a) in enumerate(routed):
            for name_b, b in routed[i + 1 :]:
                if a.overlaps(b):
                    kinds = sorted(a.media_kinds & b.media_kinds) or "any"
                    mimes = sorted(a.mime_types & b.mime_types) or "any"
                    raise InvalidInputError(
                        f"definitions: pools {name_a!r} and {name_b!r} both match "
                        f"{a.condition.value} jobs of kinds {kinds} and types {mimes}; "
                        "every job must match exactly one pool"
                    )


def _strings(value: Any, where: str) -> frozenset[str]:
    if value is None:
        return frozenset()
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise InvalidInputError(f"{where}: must be a list of non-empty strings")
    return frozenset(value)


def _parse_route(where: str, raw: Any) -> Route:
    if not isinstance(raw, Mapping):
        raise InvalidInputError(f"{where}: must be an object")
    unknown = set(raw) - {"condition", "media_kinds", "mime_types"}
    if unknown:
        raise InvalidInputError(f"{where}: unknown keys {sorted(unknown)}")
    try:
        condition = MediaCondition(raw.get("condition", MediaCondition.STAGED.value))
    except ValueError as exc:
        allowed = [c.value for c in MediaCondition]
        raise InvalidInputError(f"{where}.condition: must be one of {allowed}") from exc
    kinds = _strings(raw.get("media_kinds"), f"{where}.media_kinds")
    if kinds - MEDIA_KINDS:
        raise InvalidInputError(f"{where}.media_kinds: unknown {sorted(kinds - MEDIA_KINDS)}")
    mimes = frozenset(base_mime(m) for m in _strings(raw.get("mime_types"), f"{where}.mime_types"))
    return Route(condition, kinds, mimes)


def _parse_pool(index: int, raw: Any) -> PoolDefinition:
    where = f"definitions.pools[{index}]"
    if not isinstance(raw, Mapping):
        raise InvalidInputError(f"{where}: must be an object")
    unknown = set(raw) - {
        "name",
        "processor",
        "concurrency",
        "options",
        "routes",
        "fallback",
        "timeout_seconds",
        "max_attempts",
        "memory_limit_mb",
        "seconds_per_mib",
    }
    if unknown:
        raise InvalidInputError(f"{where}: unknown keys {sorted(unknown)}")
    name, processor = raw.get("name"), raw.get("processor")
    if not isinstance(name, str) or not name:
        raise InvalidInputError(f"{where}.name: required non-empty string")
    if not isinstance(processor, str) or not processor:
        raise InvalidInputError(f"{where}.processor: required non-empty string")
    concurrency = raw.get("concurrency", 1)
    if (
        not isinstance(concurrency, int)
        or isinstance(concurrency, bool)
        or not 1 <= concurrency <= 256
    ):
        raise InvalidInputError(f"{where}.concurrency: must be an integer from 1 to 256")
    options = raw.get("options", {})
    if not isinstance(options, Mapping):
        raise InvalidInputError(f"{where}.options: must be an object")
    fallback = raw.get("fallback", False)
    if not isinstance(fallback, bool):
        raise InvalidInputError(f"{where}.fallback: must be true or false")
    routes_raw = raw.get("routes", [])
    if not isinstance(routes_raw, list):
        raise InvalidInputError(f"{where}.routes: must be a list")
    routes = tuple(_parse_route(f"{where}.routes[{i}]", r) for i, r in enumerate(routes_raw))
    if not routes and not fallback:
        raise InvalidInputError(f"{where}: a pool without routes must be the fallback pool")
    timeout = raw.get("timeout_seconds")
    if timeout is not None and (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not 0 < timeout <= 86400
    ):
        raise InvalidInputError(f"{where}.timeout_seconds: must be a number in (0, 86400]")
    max_attempts = _optional_int(raw, "max_attempts", where, 1, 100)
    memory_limit_mb = _optional_int(raw, "memory_limit_mb", where, 64, 1_048_576)
    seconds_per_mib = raw.get("seconds_per_mib")
    if seconds_per_mib is not None and (
        isinstance(seconds_per_mib, bool)
        or not isinstance(seconds_per_mib, int | float)
        or not 0 <= seconds_per_mib <= 3600
    ):
        raise InvalidInputError(f"{where}.seconds_per_mib: must be a number from 0 to 3600")
    return PoolDefinition(
        name,
        processor,
        concurrency,
        dict(options),
        routes,
        fallback,
        float(timeout) if timeout is not None else None,
        max_attempts,
        memory_limit_mb,
        float(seconds_per_mib) if seconds_per_mib is not None else None,
    )


def _optional_int(raw: Mapping[str, Any], key: str, where: str, low: int, high: int) -> int | None:
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidInputError(f"{where}.{key}: must be an integer from {low} to {high}")
    return value


def _staged(kinds: Iterable[str], mimes: Sequence[str]) -> dict[str, Any]:
    return {"condition": "staged", "media_kinds": sorted(kinds), "mime_types": list(mimes)}


def default_definitions() -> ProcessorDefinitions:
    """The built-in table seeded when the store has none: the real processors, sized
    for a small machine (one process per heavy pool; raise `concurrency` with cores).

    Each blocking pool's address-space cap comes from its processor's measured worker
    memory (services.common.worker_memory): CTranslate2 and ONNX Runtime reserve far
    more virtual memory than they use (about 1.8 GB of address space for a 440 MB
    resident Whisper base worker), and the pods' memory limits are checked against the
    sum of these caps (tests/deploy/test_worker_memory.py). Switching a pool (for
    instance back to the `stub` processor for a load test) is an edit of this document,
    nothing else.
    """
    document: dict[str, Any] = {
        "pools": [
            {
                "name": "Image",
                "processor": "image",
                "concurrency": 1,
                # Two onnxruntime threads for the one process: a 1024x768 photo is read
                # in 0.84 s instead of 1.34 s on 2 idle cores (bench/vision_processors.py
                # --threads 2 vs 1); with more processes per pod, set 1.
                "options": {"ocr_threads": 2},
                "timeout_seconds": 120,
                "memory_limit_mb": cap_mib("image"),
                "routes": [
                    _staged(
                        ["MEDIA_KIND_IMAGE"],
                        ["image/jpeg", "image/png", "image/webp", "image/gif", "image/bmp"],
                    )
                ],
            },
            {
                "name": "Sticker",
                "processor": "sticker",
                "concurrency": 1,
                "options": {"ocr_threads": 2},
                "timeout_seconds": 120,
                "memory_limit_mb": cap_mib("sticker"),
                "routes": [_staged(["MEDIA_KIND_STICKER"], ["image/webp", "image/png"])],
            },
            {
                "name": "Audio",
                "processor": "audio",
                "concurrency": 1,
                "timeout_seconds": 900,
                "memory_limit_mb": cap_mib("audio"),
                "routes": [
                    _staged(
                        ["MEDIA_KIND_AUDIO", "MEDIA_KIND_VOICE_NOTE"],
                        [
                            "audio/ogg",
                            "audio/mpeg",
                            "audio/mp4",
                            "audio/aac",
                            "audio/wav",
                            "audio/x-wav",
                            "audio/webm",
                            "audio/amr",
                            "audio/opus",
                            "audio/flac",
                            "audio/x-m4a",
                        ],
                    )
                ],
            },
            {
                "name": "Video",
                "processor": "video",
                "concurrency": 1,
                "timeout_seconds": 900,
                "memory_limit_mb": cap_mib("video"),
                "routes": [
                    _staged(
                        ["MEDIA_KIND_VIDEO", "MEDIA_KIND_GIF", "MEDIA_KIND_VIDEO_NOTE"],
                        ["video/mp4", "video/3gpp", "video/quicktime", "video/webm", "image/gif"],
                    )
                ],
            },
            {
                "name": "Document",
                "processor": "document",
                "concurrency": 2,
                "timeout_seconds": 120,
                "memory_limit_mb": cap_mib("document"),
                "routes": [
                    _staged(
                        ["MEDIA_KIND_DOCUMENT"],
                        [
                            "application/pdf",
                            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
                            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                            "application/vnd.openxmlformats-officedocument.presentationml.presentation",
                            "application/vnd.oasis.opendocument.text",
                            "application/vnd.oasis.opendocument.spreadsheet",
                            "application/vnd.oasis.opendocument.presentation",
                            "application/epub+zip",
                            "application/rtf",
                            "text/rtf",
                            "text/html",
                            "application/xhtml+xml",
                            "text/plain",
                            "text/csv",
                            "text/tab-separated-values",
                            "text/markdown",
                            "text/x-markdown",
                            "application/json",
                            "text/json",
                            # Many apps send documents untyped: the processor reads the
                            # first bytes and the file name before deciding.
                            "application/octet-stream",
                        ],
                    )
                ],
            },
            {
                "name": "Corrupt",
                "processor": "corrupt",
                "concurrency": 1,
                "routes": [{"condition": "corrupt"}],
            },
            {
                "name": "Unsupported",
                "processor": "unsupported",
                "concurrency": 1,
                "fallback": True,
                "routes": [{"condition": "over_quota"}],
            },
        ]
    }
    return ProcessorDefinitions.from_document(document)
