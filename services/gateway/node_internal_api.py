"""What Node replicas ask the gateway to share bots among themselves (they hold no
database connection): their membership and session leases, and the active bots with the
configuration a session needs. Node's own credential only (`GATEWAY_TOKEN`), and only
the lease names Node uses: a Node server cannot take media_svc's cleanup lease."""

from __future__ import annotations

from typing import Any, Protocol

from aiohttp import web

from services.common.errors import InvalidInputError
from services.common.store import BotConfigStore, LeaseStore
from services.gateway import api_models as m
from services.gateway.node_client import node_config
from services.gateway.node_directory import MEMBER_PREFIX, SESSION_PREFIX
from services.gateway.openapi import Param, Security, endpoint, read_body

_NODE_PREFIXES = (MEMBER_PREFIX, SESSION_PREFIX)
# Node replicas' own routes: documented apart from the bot builders' API.
INTERNAL = ("internal (Node servers)",)


class NodeStore(BotConfigStore, LeaseStore, Protocol):
    """The aggregates this API reads and writes."""


def _lease_name(value: Any) -> str:
    if not isinstance(value, str) or not value.startswith(_NODE_PREFIXES) or len(value) > 300:
        prefixes = ", ".join(_NODE_PREFIXES)
        raise InvalidInputError(
            f"lease name must start with one of {prefixes} (at most 300 characters)"
        )
    return value


def _holder(value: Any) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= 512:
        raise InvalidInputError("holder must be 1-512 characters")
    return value


class NodeInternalApi:
    def __init__(self, store: NodeStore) -> None:
        self._store = store

    @endpoint(
        summary="Take or renew a Node lease (membership or a bot's session)",
        tags=INTERNAL,
        security=Security.NODE,
        request=m.LeaseBody,
        responses={200: m.Acquired},
        errors=(400,),
    )
    async def acquire(self, request: web.Request) -> web.Response:
        """POST /internal/leases/acquire {"name", "holder", "ttl_seconds"} → {"acquired"}."""
        body = await read_body(request, m.LeaseBody)
        acquired = await self._store.acquire_lease(
            _lease_name(body.name), _holder(body.holder), body.ttl_seconds
        )
        return web.json_response({"acquired": acquired})

    @endpoint(
        summary="Release a Node lease (only the holder's)",
        tags=INTERNAL,
        security=Security.NODE,
        request=m.LeaseReleaseBody,
        responses={200: m.Released},
        errors=(400,),
    )
    async def release(self, request: web.Request) -> web.Response:
        """POST /internal/leases/release {"name", "holder"}: only the holder's lease goes."""
        body = await read_body(request, m.LeaseReleaseBody)
        await self._store.release_lease(_lease_name(body.name), _holder(body.holder))
        return web.json_response({"released": True})

    @endpoint(
        summary="The holders of the Node leases under a prefix",
        tags=INTERNAL,
        security=Security.NODE,
        query=(
            Param(
                "prefix",
                "node-member: or whatsapp-session: (or longer).",
                {"type": "string", "maxLength": 300, "pattern": m.LEASE_NAME_PATTERN},
            ),
        ),
        responses={200: m.LeaseHolders},
        errors=(400,),
    )
    async def holders(self, request: web.Request) -> web.Response:
        """GET /internal/leases?prefix=node-member: → {"leases": {name: holder}}."""
        prefix = _lease_name(request.query.get("prefix", ""))
        return web.json_response({"leases": await self._store.lease_holders(prefix)})

    @endpoint(
        summary="The bots that should have a WhatsApp session, with their Node configuration",
        tags=INTERNAL,
        security=Security.NODE,
        responses={200: m.ActiveBots},
    )
    async def active_bots(self, request: web.Request) -> web.Response:
        """GET /internal/bots → {"bots": [{"bot_id", "config"}]}: the bots that should have
        a WhatsApp session, with the configuration /initialize would carry."""
        bots = []
        for bot_id in await self._store.active_bots():
            config = await self._store.get_bot_config(bot_id)
            if config is not None:
                bots.append({"bot_id": bot_id, "config": node_config(config)})
        return web.json_response({"bots": bots})
