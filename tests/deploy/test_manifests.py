"""The Kubernetes manifests hold together: they parse, every pod touching the staging
volume runs as the one shared uid/gid, probes and limits exist, and every metric the
alerts and the autoscaler read is one a service really exports."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.common.sharding import ShardAddresses, ShardIdentity

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
SHARED_UID = 10001


def _documents() -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    docs: list[dict[str, Any]] = []
    for name in kustomization["resources"]:
        docs.extend(d for d in yaml.safe_load_all((K8S / name).read_text()) if d)
    return docs


def _workloads() -> list[dict[str, Any]]:
    return [d for d in _documents() if d["kind"] in ("Deployment", "StatefulSet")]


def test_every_manifest_file_is_listed_and_parses() -> None:
    listed = set(yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk
    assert {d["metadata"]["name"] for d in _workloads()} == {
        "queue-svc",
        "media-svc",
        "gateway",
        "whatsapp-baileys-server",
    }


@pytest.mark.parametrize("workload", _workloads(), ids=lambda d: d["metadata"]["name"])
def test_pods_are_locked_down_probed_and_bounded(workload: dict[str, Any]) -> None:
    pod = workload["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == SHARED_UID
    assert pod["securityContext"]["runAsGroup"] == SHARED_UID
    for container in pod["containers"]:
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
        assert {"requests", "limits"} <= set(container["resources"])
        assert "readinessProbe" in container and "livenessProbe" in container
        refs = [r.get("secretRef", {}).get("name") for r in container.get("envFrom", [])]
        assert "chatbot-secrets" in refs


def test_staging_volume_is_shared_read_write_many() -> None:
    claim = next(d for d in _documents() if d["kind"] == "PersistentVolumeClaim")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    mounting = [
        w["metadata"]["name"]
        for w in _workloads()
        if any(
            v.get("persistentVolumeClaim", {}).get("claimName") == claim["metadata"]["name"]
            for v in w["spec"]["template"]["spec"].get("volumes", [])
        )
    ]
    assert sorted(mounting) == ["media-svc", "whatsapp-baileys-server"]


def test_queue_svc_runs_one_pod_per_shard_at_known_addresses() -> None:
    queue = next(w for w in _workloads() if w["metadata"]["name"] == "queue-svc")
    # A StatefulSet never runs two pods of one ordinal (= shard), even in a rollout.
    assert queue["kind"] == "StatefulSet"
    spec = queue["spec"]
    assert spec["podManagementPolicy"] == "Parallel"
    replicas = spec["replicas"]
    assert replicas >= 2
    [container] = spec["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["QUEUE_SVC_SHARD_COUNT"] == str(replicas)
    assert "QUEUE_SVC_SHARD" not in env  # the index comes from the pod name
    # Per-pod DNS through the headless governing Service.
    service = next(
        d
        for d in _documents()
        if d["kind"] == "Service" and d["metadata"]["name"] == spec["serviceName"]
    )
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"] == spec["selector"]["matchLabels"]
    grpc_port = next(p["port"] for p in service["spec"]["ports"] if p["name"] == "grpc")
    # Every caller's list has one address per shard, in ordinal order, and is valid.
    config = next(d for d in _documents() if d["kind"] == "ConfigMap")
    shards = ShardAddresses.parse(config["data"]["QUEUE_SVC_ADDRESS"])
    assert shards.count == replicas
    assert list(shards.addresses) == [
        f"queue-svc-{i}.{spec['serviceName']}:{grpc_port}" for i in range(replicas)
    ]
    # Each pod computes its own shard from its name exactly as the code does.
    for i in range(replicas):
        pod = {"QUEUE_SVC_SHARD_COUNT": env["QUEUE_SVC_SHARD_COUNT"], "HOSTNAME": f"queue-svc-{i}"}
        assert ShardIdentity.from_env(pod) == ShardIdentity(i, replicas)


def _exported_metric_names() -> set[str]:
    names: set[str] = set()
    for path in (REPO / "services").rglob("metrics.py"):
        names.update(re.findall(r'"((?:media|queue_svc|gateway)_[a-z_]+)"', path.read_text()))
    return names


def test_alerts_and_autoscaler_read_metrics_that_exist() -> None:
    exported = _exported_metric_names()
    counters = {f"{n}_total" for n in exported}
    rules = next(d for d in _documents() if d["kind"] == "PrometheusRule")
    expressions = [r["expr"] for g in rules["spec"]["groups"] for r in g["rules"]]
    used = {
        name
        for expr in expressions
        for name in re.findall(r"\b((?:media|queue_svc|gateway)_[a-z_]+)\b", expr)
    }
    assert used, "the alert rules reference no metric"
    assert used <= exported | counters, f"unknown metrics: {sorted(used - exported - counters)}"
    hpa = next(d for d in _documents() if d["kind"] == "HorizontalPodAutoscaler")
    assert hpa["spec"]["metrics"][0]["external"]["metric"]["name"] in exported
