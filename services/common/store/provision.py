"""`python -m services.common.store.provision`: one MongoDB role and user per service.

Run once per database, and again after an upgrade, with an administrator's URI
(MONGODB_URI, a user allowed to create roles and users, e.g. root) and MONGODB_DATABASE;
every service's password comes from MONGODB_PASSWORD_<SERVICE> (GATEWAY, QUEUE_SVC,
MEDIA_SVC, RELAY). Roles and users that exist are updated, so a run is idempotent and
an upgrade that changes db_roles.py narrows or widens them. Then the store is opened
once as the administrator: indexes and one-time backfills are made here, so the
services' own users need no right to create indexes on what they only read.

The users are created in MONGODB_DATABASE: a service's URI names it as authSource,
e.g. mongodb://media_svc:<password>@host:27017/?replicaSet=rs0&authSource=chatbot.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Mapping
from typing import Any

from pymongo import AsyncMongoClient

from services.common.errors import InvalidInputError
from services.common.store._config import StoreConfig
from services.common.store._open import open_store
from services.common.store.db_roles import ROLES, password_variable, role_name

log = logging.getLogger(__name__)


def passwords_from_env(env: Mapping[str, str]) -> dict[str, str]:
    passwords = {service: env.get(password_variable(service), "") for service in ROLES}
    missing = [password_variable(s) for s, value in passwords.items() if not value]
    if missing:
        raise InvalidInputError(f"set {', '.join(missing)} (one password per service user)")
    return passwords


async def provision(uri: str, database: str, passwords: Mapping[str, str]) -> None:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(uri)
    try:
        db = client[database]
        for service, access in ROLES.items():
            name = role_name(service)
            privileges = access.privileges(database)
            found = await db.command("rolesInfo", name)
            verb = "updateRole" if found.get("roles") else "createRole"
            await db.command(verb, name, privileges=privileges, roles=[])
            roles = [{"role": name, "db": database}]
            found = await db.command("usersInfo", service)
            verb = "updateUser" if found.get("users") else "createUser"
            await db.command(verb, service, pwd=passwords[service], roles=roles)
            log.info("%s: role %s and user %s", verb, name, service)
    finally:
        await client.close()
    store = await open_store(
        StoreConfig(backend="mongodb", mongodb_uri=uri, mongodb_database=database)
    )
    await store.close()


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    config = StoreConfig.from_env(os.environ)
    if config.backend != "mongodb" or config.mongodb_uri is None:
        print("provision: set MONGODB_URI to an administrator's URI", file=sys.stderr)
        return 2
    try:
        passwords = passwords_from_env(os.environ)
    except InvalidInputError as error:
        print(f"provision: {error}", file=sys.stderr)
        return 2
    asyncio.run(provision(config.mongodb_uri, config.mongodb_database, passwords))
    print(f"provision: {len(ROLES)} service users ready in {config.mongodb_database}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
