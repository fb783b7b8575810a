"""The media_svc pods' memory limits agree with the code: every pool's address-space cap
(RLIMIT_AS) times its processes, plus the parent, fits the memory limit of the pod that
runs it, so the kernel's OOM killer never acts before a worker meets its own cap; and the
numbers the manifest's comments state are the ones the code uses."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import yaml

from services.common.routing import PoolDefinition, default_definitions
from services.common.worker_memory import PARENT_MIB, cap_mib, pod_memory_mib
from services.media_svc.config import MediaConfig, pool_filter
from services.media_svc.definitions import AsyncSpec, build
from services.media_svc.processors.registry import default_registry
from tests.helpers.deploy import K8S, named

Docs = dict[str, list[dict[str, Any]]]
MANIFEST = K8S / "base" / "media-svc.yaml"
ROLES = ("speech", "vision", "documents")
POOL_LINE = re.compile(
    r"#\s+pool (\w+): (\d+) process(?:es)?, RLIMIT_AS (\d+) MiB, timeout (\d+) s$"
)
PARENT_LINE = re.compile(r"#\s+parent: (\d+) MiB; memory limit (\d+) MiB$")


def _mebibytes(quantity: str) -> int:
    units = {"Mi": 1, "Gi": 1024}
    return int(float(quantity[:-2]) * units[quantity[-2:]])


def _container(docs: list[dict[str, Any]], role: str) -> Mapping[str, Any]:
    deployment = named(docs, "Deployment", f"media-svc-{role}")
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    found: Mapping[str, Any] = container
    return found


def _served(container: Mapping[str, Any]) -> list[PoolDefinition]:
    env = {e["name"]: e.get("value") for e in container["env"]}
    names = pool_filter(env["MEDIA_POOLS"])
    return [p for p in default_definitions().pools if p.name.lower() in names]


def _blocking_pools() -> set[str]:
    """Pools whose processor runs in worker processes (async ones have none)."""
    loaded = build(default_definitions().to_document(), default_registry())
    return {p.definition.name for p in loaded.pools if not isinstance(p.spec, AsyncSpec)}


def _comments_by_deployment() -> dict[str, list[str]]:
    """The comment lines written above each document of the raw manifest, by name."""
    found: dict[str, list[str]] = {}
    for chunk in MANIFEST.read_text().split("\n---\n"):
        doc = yaml.safe_load(chunk)
        if doc and doc["kind"] == "Deployment":
            lines = chunk.splitlines()
            head = lines[: next(i for i, line in enumerate(lines) if line.startswith("apiV"))]
            found[doc["metadata"]["name"]] = head
    return found


def test_every_pools_cap_times_its_processes_fits_its_pods_memory_limit(
    rendered: Docs,
) -> None:
    blocking = _blocking_pools()
    for overlay, docs in rendered.items():
        for role in ROLES:
            container = _container(docs, role)
            limit = _mebibytes(container["resources"]["limits"]["memory"])
            pools = [p for p in _served(container) if p.name in blocking]
            caps = sum((p.memory_limit_mb or 0) * p.concurrency for p in pools)
            assert all(p.memory_limit_mb for p in pools), f"{role}: a pool without a cap"
            assert caps + PARENT_MIB <= limit, (
                f"{overlay}/{role}: caps {caps} MiB + parent {PARENT_MIB} MiB > limit {limit} MiB"
            )
            for pool in pools:
                assert pool.memory_limit_mb is not None
                assert pool.memory_limit_mb < limit / pool.concurrency
            # The limit is derived from the same figures, not merely large.
            workers = {p.processor: p.concurrency for p in pools}
            assert limit == pod_memory_mib(workers), f"{overlay}/{role}"


def test_the_default_pools_take_their_caps_from_the_measured_figures() -> None:
    blocking = _blocking_pools()
    for pool in default_definitions().pools:
        if pool.name in blocking:
            assert pool.memory_limit_mb == cap_mib(pool.processor), pool.name
    # A pool without its own cap falls back to MEDIA_WORKER_MEMORY_LIMIT_MB.
    assert MediaConfig().worker_memory_limit_mb >= max(
        cap_mib(p.processor) for p in default_definitions().pools if p.name in blocking
    )


def test_the_manifests_comments_state_what_the_code_uses(rendered: Docs) -> None:
    comments = _comments_by_deployment()
    blocking = _blocking_pools()
    loaded = build(default_definitions().to_document(), default_registry())
    for role in ROLES:
        container = _container(rendered["production"], role)
        head = comments[f"media-svc-{role}"]
        stated = {m[1]: m.groups()[1:] for m in map(POOL_LINE.search, head) if m}
        expected = {}
        for pool in _served(container):
            if pool.name not in blocking:
                continue
            active = loaded.pool(pool.name)
            assert active is not None
            expected[pool.name] = (
                str(pool.concurrency),
                str(active.settings.memory_limit_mb),
                f"{active.settings.timeout_seconds:.0f}",
            )
        assert stated == expected, f"media-svc-{role}: comment {stated}, code {expected}"
        [parent] = [m for m in map(PARENT_LINE.search, head) if m]
        limit = _mebibytes(container["resources"]["limits"]["memory"])
        assert (int(parent[1]), int(parent[2])) == (PARENT_MIB, limit)
        # No other number of processes or seconds is stated in prose.
        prose = [line for line in head if not POOL_LINE.search(line)]
        assert not [line for line in prose if re.search(r"\d+\s*(?:s\b|workers?|MB)", line)]
