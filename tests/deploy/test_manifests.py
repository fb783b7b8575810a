"""The rendered overlays hold together: pods locked down, probed and bounded; drains fit
their grace periods; shards, pools, budgets, policies and scrape targets agree with one
another and with the code; every metric an alert or a scaler reads is exported."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
import yaml

from services.common.routing import default_definitions
from services.common.sharding import ShardAddresses, ShardIdentity
from services.media_svc.config import pool_filter
from tests.helpers.deploy import K8S, OVERLAYS, REPO, named

Docs = dict[str, list[dict[str, Any]]]
SHARED_UID = 10001
SERVICES = {
    "gateway",
    "queue-svc",
    "media-svc-speech",
    "media-svc-vision",
    "media-svc-documents",
    "whatsapp-baileys-server",
    "relay",
}
ROLE_POOLS = {
    "speech": {"audio", "video"},
    "vision": {"image", "sticker"},
    "documents": {"document", "corrupt", "unsupported"},
}
# How long each service's own drain may last (its setting in the manifest); the grace
# period must leave it at least this margin before SIGKILL.
DRAIN_SETTINGS = (
    "QUEUE_SVC_SHUTDOWN_GRACE_SECONDS",
    "MEDIA_SHUTDOWN_GRACE_SECONDS",
    "RELAY_TIMEOUT_SECONDS",
)
DRAIN_MARGIN_SECONDS = 10
STORE_USERS = {"gateway", "queue-svc", "relay"} | {f"media-svc-{r}" for r in ROLE_POOLS}
# Metrics an alert names that the code does not export yet. Listed, not silently
# accepted: a test fails as soon as the code exports one, to remove it here.
PENDING_METRICS: set[str] = set()
PROMETHEUS_OWN = {"up"}
METRIC_PREFIXES = r"(?:media|queue_svc|gateway|relay)_"


def _workloads(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] in ("Deployment", "StatefulSet")]


def _service_workloads() -> Iterator[Any]:
    for overlay in OVERLAYS:
        for name in sorted(SERVICES):
            yield pytest.param(overlay, name, id=f"{overlay}-{name}")


def _env(container: Mapping[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def _mebibytes(quantity: str) -> float:
    units = {"Mi": 1, "Gi": 1024}
    return float(quantity[:-2]) * units[quantity[-2:]]


def test_every_base_file_is_listed_and_every_overlay_renders(rendered: Docs) -> None:
    base = K8S / "base"
    listed = set(yaml.safe_load((base / "kustomization.yaml").read_text())["resources"])
    assert listed == {p.name for p in base.glob("*.yaml")} - {"kustomization.yaml"}
    for overlay, docs in rendered.items():
        names = {w["metadata"]["name"] for w in _workloads(docs)}
        expected = SERVICES | ({"mongodb"} if overlay == "dev" else set())
        assert names == expected, overlay
        assert all(
            d["metadata"].get("namespace") == "chatbot" for d in docs if d["kind"] != "Namespace"
        )


@pytest.mark.parametrize(("overlay", "name"), list(_service_workloads()))
def test_pods_are_locked_down_probed_bounded_and_drained(
    rendered: Docs, overlay: str, name: str
) -> None:
    docs = rendered[overlay]
    workload = next(w for w in _workloads(docs) if w["metadata"]["name"] == name)
    pod = workload["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == SHARED_UID
    assert pod["securityContext"]["runAsGroup"] == SHARED_UID
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    [container] = pod["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert {"requests", "limits"} <= set(container["resources"])
    assert "readinessProbe" in container and "livenessProbe" in container
    image = container["image"]
    assert ":" in image and not image.endswith(":latest"), image
    # Secrets are read key by key (test_least_privilege.py checks which keys).
    assert not [r for r in container.get("envFrom", []) if "secretRef" in r]
    env = _env(container)
    if name in STORE_USERS:
        secret = "chatbot-media-svc" if name.startswith("media-svc") else f"chatbot-{name}"
        assert env["MONGODB_URI"] == {"secretKeyRef": {"name": secret, "key": "MONGODB_URI"}}
    grace = pod["terminationGracePeriodSeconds"]
    drains = [float(env[k]) for k in DRAIN_SETTINGS if k in env]
    for drain in drains:
        assert grace >= drain + DRAIN_MARGIN_SECONDS, f"{name}: grace {grace} s, drain {drain} s"
    if name in ("queue-svc", "relay") or name.startswith("media-svc"):
        assert drains, f"{name} states no drain time"


def test_secrets_come_from_the_operator_in_production_and_are_generated_in_dev(
    rendered: Docs,
) -> None:
    assert not [d for d in rendered["production"] if d["kind"] == "Secret"]
    dev_secrets = {d["metadata"]["name"] for d in rendered["dev"] if d["kind"] == "Secret"}
    roles = {"gateway", "queue-svc", "media-svc", "relay", "node", "mongodb-admin"}
    assert dev_secrets == {f"chatbot-{r}" for r in roles} | {"chatbot-mongodb-keyfile"}
    mongo = named(rendered["dev"], "StatefulSet", "mongodb")
    assert "--replSet" in mongo["spec"]["template"]["spec"]["containers"][0]["args"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_volume_is_shared_between_pods(rendered: Docs, overlay: str) -> None:
    """Media bytes live in GridFS: no claim is ReadWriteMany (a cluster whose default
    class is ReadWriteOnce would leave it Pending) and no pod mounts a shared claim;
    each StatefulSet pod has its own volumes."""
    docs = rendered[overlay]
    claims = [d for d in docs if d["kind"] == "PersistentVolumeClaim"]
    assert not [c for c in claims if "ReadWriteMany" in c["spec"]["accessModes"]]
    for workload in _workloads(docs):
        volumes = workload["spec"]["template"]["spec"].get("volumes", [])
        shared = [v for v in volumes if "persistentVolumeClaim" in v]
        assert not shared, f"{workload['metadata']['name']} mounts {shared}"
        for template in workload["spec"].get("volumeClaimTemplates", []):
            assert template["spec"]["accessModes"] == ["ReadWriteOnce"]
    config = named(docs, "ConfigMap", "chatbot-config")["data"]
    assert config["MEDIA_STORE"] == "gridfs"
    assert "MEDIA_STAGING_DIR" not in config
    for role in ROLE_POOLS:
        [container] = named(docs, "Deployment", f"media-svc-{role}")["spec"]["template"]["spec"][
            "containers"
        ]
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert mounts[_env(container)["MEDIA_SCRATCH_DIR"]] == "scratch"


@pytest.mark.parametrize(("overlay", "replicas"), [("production", 3), ("production-hpa", 3)])
def test_node_replicas_share_the_bots_by_lease(rendered: Docs, overlay: str, replicas: int) -> None:
    docs = rendered[overlay]
    node = named(docs, "StatefulSet", "whatsapp-baileys-server")
    assert node["spec"]["replicas"] == replicas
    [container] = node["spec"]["template"]["spec"]["containers"]
    env = _env(container)
    assert env["NODE_OWNERSHIP"] == "lease"
    assert env["NODE_AUTH_STATE"] == "store"
    assert env["NODE_MEDIA_STAGING"] == "gateway"
    assert env["NODE_REPLICA_ID"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    # pino's level names: Node refuses the Python services' "INFO" from the ConfigMap.
    assert env["LOG_LEVEL"] == "info"
    # The advertised address resolves through the governing headless Service.
    governing = named(docs, "Service", node["spec"]["serviceName"])
    assert governing["spec"]["clusterIP"] == "None"
    assert env["NODE_ADVERTISED_URL"] == (
        f"http://$(NODE_REPLICA_ID).{node['spec']['serviceName']}:8091"
    )
    labels = node["spec"]["template"]["metadata"]["labels"]
    [budget] = [
        d
        for d in docs
        if d["kind"] == "PodDisruptionBudget" and _selects(d["spec"]["selector"], labels)
    ]
    # A drain takes one Node pod at a time: the others keep serving its bots' peers.
    assert budget["spec"]["maxUnavailable"] == 1 < replicas


@pytest.mark.parametrize("overlay", ["production", "production-hpa"])
def test_gateways_scale_on_cpu(rendered: Docs, overlay: str) -> None:
    docs = rendered[overlay]
    hpa = named(docs, "HorizontalPodAutoscaler", "gateway")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "gateway"
    assert hpa["spec"]["minReplicas"] == named(docs, "Deployment", "gateway")["spec"]["replicas"]
    [metric] = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    # Utilization is relative to the request: the container must state one.
    [container] = named(docs, "Deployment", "gateway")["spec"]["template"]["spec"]["containers"]
    assert "cpu" in container["resources"]["requests"]


@pytest.mark.parametrize("overlay", ["production", "production-hpa"])
def test_relay_replicas_share_the_bots_and_roll(rendered: Docs, overlay: str) -> None:
    relay = named(rendered[overlay], "Deployment", "relay")
    assert relay["spec"]["replicas"] >= 2
    strategy = relay["spec"]["strategy"]
    assert strategy["type"] == "RollingUpdate"
    assert strategy["rollingUpdate"]["maxUnavailable"] == 0
    [container] = relay["spec"]["template"]["spec"]["containers"]
    assert _env(container)["RELAY_INSTANCE_ID"] == {"fieldRef": {"fieldPath": "metadata.name"}}


@pytest.mark.parametrize(("overlay", "shards"), [("dev", 1), ("production", 4)])
def test_queue_svc_runs_one_pod_per_shard_at_known_addresses(
    rendered: Docs, overlay: str, shards: int
) -> None:
    docs = rendered[overlay]
    queue = named(docs, "StatefulSet", "queue-svc")
    spec = queue["spec"]
    assert spec["podManagementPolicy"] == "Parallel"
    assert spec["replicas"] == shards
    env = _env(spec["template"]["spec"]["containers"][0])
    assert env["QUEUE_SVC_SHARD_COUNT"] == str(shards)
    assert "QUEUE_SVC_SHARD" not in env  # the index comes from the pod name
    service = named(docs, "Service", spec["serviceName"])
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"] == spec["selector"]["matchLabels"]
    config = named(docs, "ConfigMap", "chatbot-config")
    addresses = ShardAddresses.parse(config["data"]["QUEUE_SVC_ADDRESS"])
    assert list(addresses.addresses) == [
        f"queue-svc-{i}.{spec['serviceName']}:50051" for i in range(shards)
    ]
    for i in range(shards):
        pod = {"QUEUE_SVC_SHARD_COUNT": str(shards), "HOSTNAME": f"queue-svc-{i}"}
        assert ShardIdentity.from_env(pod) == ShardIdentity(i, shards)


def test_media_roles_split_the_pools(rendered: Docs) -> None:
    """Each pool has one role; whether its workers fit the pod's memory limit is
    tests/deploy/test_worker_memory.py's (from the measured figures, not assumed ones)."""
    docs = rendered["production"]
    pools = {p.name.lower(): p for p in default_definitions().pools}
    seen: set[str] = set()
    for role, expected in ROLE_POOLS.items():
        deployment = named(docs, "Deployment", f"media-svc-{role}")
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        served = set(pool_filter(_env(container)["MEDIA_POOLS"]))
        assert served == expected
        assert not served & seen, "a pool served by two roles"
        seen |= served
        limit = _mebibytes(container["resources"]["limits"]["memory"])
        request = _mebibytes(container["resources"]["requests"]["memory"])
        assert request <= limit
    assert seen == set(pools), "every pool of the default definitions has a role"


def _pool_regex(query: str) -> set[str]:
    [regex] = re.findall(r'pool=~"([^"]+)"', query)
    return {p.lower() for p in regex.split("|")}


def test_each_role_scales_on_its_own_pools(rendered: Docs) -> None:
    for role, expected in ROLE_POOLS.items():
        scaled = named(rendered["production"], "ScaledObject", f"media-svc-{role}")
        assert scaled["spec"]["scaleTargetRef"]["name"] == f"media-svc-{role}"
        queries = [t["metadata"]["query"] for t in scaled["spec"]["triggers"]]
        assert {t["type"] for t in scaled["spec"]["triggers"]} == {"prometheus"}
        assert any("media_pool_depth" in q for q in queries)
        assert any("media_oldest_pending_age_seconds" in q for q in queries)
        assert all(_pool_regex(q) == expected for q in queries)
        # Heavy roles may sleep; the documents role exports every pool's depth meanwhile.
        assert scaled["spec"]["minReplicaCount"] == (1 if role == "documents" else 0)
        hpa = named(rendered["production-hpa"], "HorizontalPodAutoscaler", f"media-svc-{role}")
        assert hpa["spec"]["scaleTargetRef"]["name"] == f"media-svc-{role}"
        for metric in hpa["spec"]["metrics"]:
            [selector] = metric["external"]["metric"]["selector"]["matchExpressions"]
            assert {v.lower() for v in selector["values"]} == expected
    media_hpas = [
        d
        for d in rendered["production"]
        if d["kind"] == "HorizontalPodAutoscaler" and d["metadata"]["name"] != "gateway"
    ]
    assert not media_hpas
    assert not [d for d in rendered["production-hpa"] if d["kind"] == "ScaledObject"]
    assert not [
        d for d in rendered["dev"] if d["kind"] in ("ScaledObject", "HorizontalPodAutoscaler")
    ]


def _selects(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In"
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


def _pod_labels(docs: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    return {
        w["metadata"]["name"]: w["spec"]["template"]["metadata"]["labels"] for w in _workloads(docs)
    }


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_service_has_a_disruption_budget_and_a_scrape_target(
    rendered: Docs, overlay: str
) -> None:
    docs = rendered[overlay]
    labels = _pod_labels(docs)
    budgets = [d for d in docs if d["kind"] == "PodDisruptionBudget"]
    monitors = [d for d in docs if d["kind"] in ("ServiceMonitor", "PodMonitor")]
    services = [d for d in docs if d["kind"] == "Service"]
    for name in SERVICES:
        covering = [b for b in budgets if _selects(b["spec"]["selector"], labels[name])]
        assert len(covering) == 1, f"{name}: {len(covering)} disruption budgets"
        if name == "whatsapp-baileys-server":
            continue  # Node exports no Prometheus metrics
        pod_monitored = any(
            m["kind"] == "PodMonitor" and _selects(m["spec"]["selector"], labels[name])
            for m in monitors
        )
        service_monitored = any(
            m["kind"] == "ServiceMonitor"
            and _selects(m["spec"]["selector"], s["metadata"].get("labels", {}))
            and _selects({"matchLabels": s["spec"]["selector"]}, labels[name])
            and any(p["name"] == "metrics" for p in s["spec"]["ports"])
            for m in monitors
            for s in services
        )
        assert pod_monitored or service_monitored, f"{name} is not scraped"


def _policies_for(docs: list[dict[str, Any]], labels: Mapping[str, str]) -> list[dict[str, Any]]:
    return [
        d
        for d in docs
        if d["kind"] == "NetworkPolicy" and _selects(d["spec"]["podSelector"], labels)
    ]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_the_gateway_is_reachable_from_outside_the_namespace(
    rendered: Docs, overlay: str
) -> None:
    docs = rendered[overlay]
    labels = _pod_labels(docs)
    default_deny = named(docs, "NetworkPolicy", "default-deny")
    assert default_deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    for name, pod in labels.items():
        for policy in _policies_for(docs, pod):
            for rule in policy["spec"].get("ingress", []):
                peers = rule.get("from")
                ports = {p["port"] for p in rule.get("ports", [])}
                outside = peers is None or any("ipBlock" in p for p in peers)
                monitoring = peers is not None and all(
                    p.get("namespaceSelector", {}).get("matchLabels")
                    == {"kubernetes.io/metadata.name": "monitoring"}
                    for p in peers
                )
                if monitoring:
                    assert ports == {"metrics"}, policy["metadata"]["name"]
                elif outside:
                    assert name == "gateway" and ports == {8090}, policy["metadata"]["name"]
                else:
                    assert all("namespaceSelector" not in p for p in peers)
    node_egress = [
        (peer, port["port"])
        for policy in _policies_for(docs, labels["whatsapp-baileys-server"])
        for rule in policy["spec"].get("egress", [])
        for peer in rule.get("to", [])
        for port in rule.get("ports", [])
    ]
    assert any(
        p.get("ipBlock", {}).get("cidr") == "0.0.0.0/0" and port == 443 for p, port in node_egress
    )


def _exported_metric_names() -> set[str]:
    names: set[str] = set()
    for path in (REPO / "services").rglob("metrics.py"):
        names.update(re.findall(rf'"({METRIC_PREFIXES}[a-z_]+)"', path.read_text()))
    counters = {f"{n}_total" for n in names}
    return names | counters


def _read_metrics(docs: list[dict[str, Any]]) -> set[str]:
    expressions = [
        r["expr"]
        for d in docs
        if d["kind"] == "PrometheusRule"
        for g in d["spec"]["groups"]
        for r in g["rules"]
    ]
    expressions += [
        t["metadata"]["query"]
        for d in docs
        if d["kind"] == "ScaledObject"
        for t in d["spec"]["triggers"]
    ]
    expressions += [
        m["external"]["metric"]["name"]
        for d in docs
        if d["kind"] == "HorizontalPodAutoscaler"
        for m in d["spec"]["metrics"]
        if m["type"] == "External"
    ]
    used = {n for e in expressions for n in re.findall(rf"\b({METRIC_PREFIXES}[a-z_]+)\b", e)}
    used |= {n for e in expressions for n in PROMETHEUS_OWN if re.search(rf"\b{n}\{{", e)}
    return used


def test_alerts_and_scalers_read_metrics_the_code_exports(rendered: Docs) -> None:
    exported = _exported_metric_names()
    used = _read_metrics([d for docs in rendered.values() for d in docs])
    assert {"media_pool_depth", "media_oldest_pending_age_seconds", "up"} <= used
    unknown = used - exported - PROMETHEUS_OWN - PENDING_METRICS
    assert not unknown, f"alerts or scalers read metrics no service exports: {sorted(unknown)}"


def test_pending_metrics_are_still_pending() -> None:
    landed = PENDING_METRICS & _exported_metric_names()
    assert not landed, f"now exported by the code, remove from PENDING_METRICS: {sorted(landed)}"


def test_every_alert_has_a_runbook_section(rendered: Docs) -> None:
    runbooks = (REPO / "deploy" / "runbooks.md").read_text()
    anchors = {line[3:].strip().lower() for line in runbooks.splitlines() if line.startswith("## ")}
    rules = named(rendered["production"], "PrometheusRule", "chatbot")
    alerts = [r for g in rules["spec"]["groups"] for r in g["rules"]]
    assert {a["alert"] for a in alerts} >= {
        "MediaPoolBacklogGrowing",
        "MediaOldestPendingJobOld",
        "StalePlaceholders",
        "MediaFailureRateHigh",
        "QueueSvcDown",
        "WebhookRelayLagHigh",
        "WebhookFailing",
    }
    for alert in alerts:
        path, _, anchor = alert["annotations"]["runbook"].partition("#")
        assert path == "deploy/runbooks.md" and anchor == alert["alert"].lower()
        assert anchor in anchors, f"{alert['alert']} has no section in deploy/runbooks.md"
