"""Least privilege, checked on what would run: every pod of every rendered overlay and
every Compose service reads only the secret keys its role needs; every service has its
own MongoDB user whose role (services/common/store/db_roles.py, created for real here
on SecantusDB by the provisioning command) names only the collections it needs, and
media_svc's cannot write bot_configurations; Compose runs MongoDB with authentication;
the start scripts write their secret files 0600."""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import os
import re
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml
from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection

from services.common.store.db_roles import (
    MUTATING_ACTIONS,
    ROLES,
    password_variable,
    role_name,
)
from services.common.store.mongo import MongoStore
from tests.helpers import secantus
from tests.helpers.deploy import REPO, named

Docs = dict[str, list[dict[str, Any]]]
# The secret keys each workload may read: (Secret, key) in Kubernetes.
NEEDED = {
    "gateway": {"MONGODB_URI", "GATEWAY_TOKEN", "GATEWAY_API_TOKEN", "NODE_API_TOKEN"},
    "queue-svc": {"MONGODB_URI"},
    "media-svc": {"MONGODB_URI"},
    "relay": {"MONGODB_URI", "RELAY_GATEWAY_API_TOKEN"},
    "node": {"GATEWAY_TOKEN", "NODE_API_TOKEN"},
    "mongodb": {"MONGO_INITDB_ROOT_USERNAME", "MONGO_INITDB_ROOT_PASSWORD", "keyfile"},
    "mongodb-provision": {"MONGODB_URI", *(password_variable(s) for s in ROLES)},
}
# Which role's Secret (chatbot-<role>) and database user each workload uses.
ROLE_OF = {
    "gateway": "gateway",
    "queue-svc": "queue-svc",
    "media-svc-speech": "media-svc",
    "media-svc-vision": "media-svc",
    "media-svc-documents": "media-svc",
    "relay": "relay",
    "whatsapp-baileys-server": "node",
    "mongodb": "mongodb",
    "mongodb-provision": "mongodb-provision",
}
SECRETS_OF = {
    "mongodb": {"chatbot-mongodb-admin", "chatbot-mongodb-keyfile"},
    "mongodb-provision": {"chatbot-mongodb-admin"},
}
DB_USER = {
    "gateway": "gateway",
    "queue-svc": "queue_svc",
    "media-svc": "media_svc",
    "relay": "relay",
}
COMPOSE_NEEDED = {
    "gateway": {"GATEWAY_TOKEN", "GATEWAY_API_TOKEN", "NODE_API_TOKEN", "MONGODB_PASSWORD_GATEWAY"},
    "queue_svc": {"MONGODB_PASSWORD_QUEUE_SVC"},
    "media_svc": {"MONGODB_PASSWORD_MEDIA_SVC"},
    "relay": {"GATEWAY_API_TOKEN", "MONGODB_PASSWORD_RELAY"},
    "whatsapp_baileys_server": {"GATEWAY_TOKEN", "NODE_API_TOKEN"},
    "mongo": {"MONGO_ROOT_PASSWORD"},
    "mongo_provision": {"MONGO_ROOT_PASSWORD", *(password_variable(s) for s in ROLES)},
}
SECRET_VARIABLES = set().union(*COMPOSE_NEEDED.values())


def _pods(docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for doc in docs:
        if doc["kind"] in ("Deployment", "StatefulSet", "Job"):
            yield doc["metadata"]["name"], doc["spec"]["template"]["spec"]


def _secret_reads(pod: Mapping[str, Any]) -> set[tuple[str, str]]:
    """(Secret, key) of every secret value the pod can read; a whole Secret is `*`."""
    reads: set[tuple[str, str]] = set()
    for container in [*pod.get("initContainers", []), *pod["containers"]]:
        for source in container.get("envFrom", []):
            if "secretRef" in source:
                reads.add((source["secretRef"]["name"], "*"))
        for variable in container.get("env", []):
            ref = variable.get("valueFrom", {}).get("secretKeyRef")
            if ref is not None:
                reads.add((ref["name"], ref["key"]))
    for volume in pod.get("volumes", []):
        secret = volume.get("secret")
        if secret is not None:
            items = secret.get("items")
            keys = [i["key"] for i in items] if items else ["*"]
            reads.update((secret["secretName"], key) for key in keys)
    return reads


def test_every_pod_reads_only_the_secret_keys_its_role_needs(rendered: Docs) -> None:
    for overlay, docs in rendered.items():
        for name, pod in _pods(docs):
            role = ROLE_OF[name]
            reads = _secret_reads(pod)
            allowed_secrets = SECRETS_OF.get(role, {f"chatbot-{role}"})
            assert {secret for secret, _ in reads} <= allowed_secrets, (overlay, name, reads)
            assert {key for _, key in reads} <= NEEDED[role], (overlay, name, reads)
            if role in DB_USER:
                assert (f"chatbot-{role}", "MONGODB_URI") in reads, (overlay, name)


def test_dev_secrets_hold_only_their_role_keys_and_each_service_its_own_user(
    rendered: Docs,
) -> None:
    docs = rendered["dev"]
    admin = named(docs, "Secret", "chatbot-mongodb-admin")
    admin_values = _decoded(admin)
    for role, user in DB_USER.items():
        values = _decoded(named(docs, "Secret", f"chatbot-{role}"))
        assert set(values) == NEEDED[role], role
        uri = urlsplit(values["MONGODB_URI"])
        assert uri.username == user, role
        assert parse_qs(uri.query)["authSource"] == ["chatbot"]
        assert uri.password == admin_values[password_variable(user)], role
    assert set(_decoded(named(docs, "Secret", "chatbot-node"))) == NEEDED["node"]
    mongo = named(docs, "StatefulSet", "mongodb")["spec"]["template"]["spec"]["containers"][0]
    assert "--auth" in mongo["args"] and "--keyFile" in mongo["args"]
    job = named(docs, "Job", "mongodb-provision")["spec"]["template"]["spec"]["containers"][0]
    assert job["command"] == ["python", "-m", "services.common.store.provision"]


def _decoded(secret: Mapping[str, Any]) -> dict[str, str]:
    data = {k: base64.b64decode(v).decode() for k, v in secret.get("data", {}).items()}
    return {**data, **secret.get("stringData", {})}


def test_media_svc_and_relay_cannot_write_bot_configurations() -> None:
    for service in ("media_svc", "relay"):
        actions = ROLES[service].actions("bot_configurations")
        assert actions == {"find"}, service
        for privilege in ROLES[service].privileges("chatbot"):
            if privilege["resource"]["collection"] == "bot_configurations":
                assert not MUTATING_ACTIONS & set(privilege["actions"]), service
    # media_svc writes only its jobs, leases, and the media bytes it deletes after delivery
    # with their per-bot counter.
    written = {
        c
        for c in ROLES["media_svc"].collections
        if MUTATING_ACTIONS & ROLES["media_svc"].actions(c)
    }
    assert written == {
        "media_processing_jobs",
        "media_processing_jobs_holding",
        "media_processing_jobs_failed",
        "leases",
        "media.files",
        "media.chunks",
        "media_usage",
    }


def _store_collections() -> set[str]:
    """Every collection the MongoDB adapter holds (read from an unconnected client)."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        "mongodb://127.0.0.1:1", connect=False
    )
    store = MongoStore(client, "chatbot", change_streams=False)
    names: set[str] = set()
    for value in vars(store).values():
        values = value.values() if isinstance(value, dict) else [value]
        names.update(v.name for v in values if isinstance(v, AsyncCollection))
    return names


def test_every_collection_of_the_store_is_named_by_a_role() -> None:
    used = _store_collections()
    assert {"bot_configurations", "queues", "api_tokens", "media_processing_jobs"} <= used
    named_by_roles = set().union(*(access.collections for access in ROLES.values()))
    # `store_migrations` markers are written by the provisioning run (the administrator).
    assert used - named_by_roles == set(), "add the collection to db_roles.ROLES"
    assert named_by_roles <= used, "db_roles names a collection the store does not use"


def test_provisioning_creates_each_role_and_user_idempotently(tmp_path: Path) -> None:
    if secantus.executable() is None:
        pytest.fail(f"{secantus.EXECUTABLE} is not installed: run `make venv`")
    server = secantus.start(tmp_path / "secantus", replica_set=True)
    database = f"provision_{uuid.uuid4().hex[:8]}"
    passwords = {password_variable(s): f"pw-{s}-{uuid.uuid4().hex}" for s in ROLES}
    env = {
        **os.environ,
        "MONGODB_URI": server.uri,
        "MONGODB_DATABASE": database,
        **passwords,
    }
    try:
        for _ in range(2):  # the second run updates what the first created
            result = subprocess.run(
                [sys.executable, "-m", "services.common.store.provision"],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert result.returncode == 0, result.stdout + result.stderr
        missing = {k: v for k, v in env.items() if k != password_variable("media_svc")}
        refused = subprocess.run(
            [sys.executable, "-m", "services.common.store.provision"],
            env=missing,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert refused.returncode == 2 and "MONGODB_PASSWORD_MEDIA_SVC" in refused.stderr
        roles = _roles_info(server.uri, database)
    finally:
        server.stop()
    assert set(roles) == {role_name(s) for s in ROLES}
    media = roles[role_name("media_svc")]
    assert media["bot_configurations"] == ["find"]
    assert "insert" in media["media_processing_jobs"]
    for service, access in ROLES.items():
        stored = roles[role_name(service)]
        assert set(stored) == set(access.collections), service


def _roles_info(uri: str, database: str) -> dict[str, dict[str, list[str]]]:
    async def read() -> dict[str, dict[str, list[str]]]:
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(uri)
        try:
            found = await client[database].command(
                "rolesInfo", [role_name(s) for s in ROLES], showPrivileges=True
            )
            users = await client[database].command("usersInfo", list(map(str, ROLES)))
        finally:
            await client.close()
        assert {u["user"] for u in users["users"]} == set(ROLES)
        return {
            role["role"]: {
                p["resource"]["collection"]: sorted(p["actions"]) for p in role["privileges"]
            }
            for role in found["roles"]
        }

    return asyncio.run(read())


def _compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    return document


def test_compose_runs_mongodb_with_authentication_and_a_user_per_service() -> None:
    services = _compose()["services"]
    mongo = services["mongo"]
    assert "--auth" in mongo["command"] and "--keyFile" in mongo["command"]
    assert "MONGO_INITDB_ROOT_PASSWORD" in mongo["environment"]
    users = {"gateway": "gateway", "queue_svc": "queue_svc", "media_svc": "media_svc"}
    users["relay"] = "relay"
    for service, user in users.items():
        # ${NAME:?message} filled with NAME, as Compose fills it from .env
        text = re.sub(
            r"\$\{([A-Z_]+):\?[^}]*\}", r"\1", services[service]["environment"]["MONGODB_URI"]
        )
        uri = urlsplit(text)
        assert uri.username == user, service
        assert uri.password == password_variable(user), service
        assert parse_qs(uri.query)["authSource"] == ["chatbot"], service
        assert services[service]["depends_on"]["mongo_provision"] == {
            "condition": "service_completed_successfully"
        }


def test_compose_services_get_only_their_secrets() -> None:
    for name, service in _compose()["services"].items():
        # No env_file full of secrets: .env is read by Compose for ${…} only.
        assert ".env" not in [str(f) for f in service.get("env_file", [])], name
        text = yaml.safe_dump(service.get("environment", {}))
        used = set(re.findall(r"\$\{([A-Z_]+)", text)) & SECRET_VARIABLES
        assert used <= COMPOSE_NEEDED[name], (name, used - COMPOSE_NEEDED[name])


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_start_sh_writes_its_secret_files_0600(tmp_path: Path) -> None:
    env_file, key_file = tmp_path / "compose" / ".env", tmp_path / "compose" / "keyfile"
    env_file.parent.mkdir()
    env_file.write_text("GATEWAY_TOKEN=kept\n")
    env_file.chmod(0o644)  # an older start's file, readable by others
    script = f'umask 022; source scripts/start.sh; write_secrets "{env_file}" "{key_file}"'
    result = subprocess.run(
        ["bash", "-c", script], cwd=REPO, capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stderr
    assert _mode(env_file) == 0o600 and _mode(key_file) == 0o600
    values = dict(line.split("=", 1) for line in env_file.read_text().splitlines())
    assert values["GATEWAY_TOKEN"] == "kept"
    assert set(values) >= SECRET_VARIABLES
    assert all(len(values[k]) == 64 for k in SECRET_VARIABLES - {"GATEWAY_TOKEN"})
    assert 6 <= len(key_file.read_text()) <= 1024


def test_make_up_writes_its_secret_files_0600(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("up", REPO / "scripts" / "up.py")
    assert spec is not None and spec.loader is not None
    up = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(up)
    previous = os.umask(0o022)
    try:
        (tmp_path / "secrets.env").write_text("")
        (tmp_path / "secrets.env").chmod(0o644)
        env, env_file = up.prepare(tmp_path)
    finally:
        os.umask(previous)
    assert _mode(env_file) == 0o600
    assert _mode(tmp_path / "secrets.env") == 0o600
    assert env["GATEWAY_API_TOKEN"] in (tmp_path / "secrets.env").read_text()
