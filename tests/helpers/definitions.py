"""Processor definitions for tests and load benchmarks: the built-in table with chosen
media pools switched to the Phase-1 stub (the product's defaults run real engines)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services.common.routing import default_definitions

MEDIA_POOLS = ("Image", "Sticker", "Audio", "Video", "Document")


def stub_definitions(
    options: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    pools: tuple[str, ...] = MEDIA_POOLS,
    concurrency: int | None = None,
) -> dict[str, Any]:
    """The default document with `pools` on the `stub` processor; `options` by pool name
    (default: no delay, the stub's own text), `concurrency` for every stubbed pool."""
    document = default_definitions().to_document()
    for pool in document["pools"]:
        if pool["name"] not in pools:
            continue
        pool["processor"] = "stub"
        pool["options"] = dict((options or {}).get(pool["name"], {}))
        if concurrency is not None:
            pool["concurrency"] = concurrency
    return document
