"""The functions a V8 `.cpuprofile` (node --cpu-prof) spent its samples in: self time and
total time (self plus callees) per function, largest first.

    .venv/bin/python bench/cpuprofile_top.py var/profiles/CPU.*.cpuprofile [--top 40]
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path
from typing import Any


def where(node: dict[str, Any]) -> str:
    frame = node["callFrame"]
    url = str(frame.get("url", "")).rsplit("/", 2)
    name = frame.get("functionName") or "(anonymous)"
    return f"{name} {'/'.join(url[-2:])}:{frame.get('lineNumber', -1) + 1}"


def summarise(path: Path, top: int) -> None:
    profile = json.loads(path.read_text())
    nodes = {node["id"]: node for node in profile["nodes"]}
    parent: dict[int, int] = {}
    for node in profile["nodes"]:
        for child in node.get("children", []):
            parent[child] = node["id"]
    hits = Counter(profile["samples"])
    total = sum(hits.values()) or 1
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for node_id, count in hits.items():
        own[where(nodes[node_id])] += count
        seen: set[str] = set()
        walk: int | None = node_id
        while walk is not None:
            name = where(nodes[walk])
            if name not in seen:
                inclusive[name] += count
                seen.add(name)
            walk = parent.get(walk)
    print(f"{path.name}: {total} samples")
    print("self %  function")
    for name, count in own.most_common(top):
        print(f"{100 * count / total:6.1f}  {name}")
    print("total %  function")
    for name, count in inclusive.most_common(top):
        print(f"{100 * count / total:6.1f}  {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("profiles", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=40)
    args = parser.parse_args()
    for path in args.profiles:
        summarise(path, args.top)


if __name__ == "__main__":
    main()
