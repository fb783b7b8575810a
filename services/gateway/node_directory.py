"""Which Node server holds a bot's WhatsApp session, so the gateway's calls for that bot
(/initialize, session state, pairing) reach the right replica.

Node replicas announce themselves with a renewable lease `node-member:<replica id>` whose
holder is their URL, and hold `whatsapp-session:<bot id>` for each session they run
(whatsapp_baileys_server/src/ownership.js). A bot's owner is the holder of its session
lease; a bot nobody holds yet goes to its rendezvous winner among the live members (the
replica with the highest sha256(replica id, bot id)), the same rule the replicas apply,
so a resize moves only the bots whose winner changed. With no member at all (one Node
server in static mode) every call goes to NODE_API_URL."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from services.common.store import LeaseStore

MEMBER_PREFIX = "node-member:"
SESSION_PREFIX = "whatsapp-session:"


def rendezvous_owner(bot_id: str, replica_ids: Iterable[str]) -> str | None:
    """The replica a bot belongs to among `replica_ids`; None when there is none."""
    return max(
        replica_ids,
        key=lambda replica: hashlib.sha256(f"{replica}\0{bot_id}".encode()).digest(),
        default=None,
    )


class NodeDirectory:
    def __init__(self, store: LeaseStore, default_url: str) -> None:
        self._store = store
        self._default_url = default_url

    async def url_for(self, bot_id: str) -> str:
        members = await self._store.lease_holders(MEMBER_PREFIX)
        if not members:
            return self._default_url
        urls = {name.removeprefix(MEMBER_PREFIX): url for name, url in members.items()}
        session = SESSION_PREFIX + bot_id
        holder = (await self._store.lease_holders(session)).get(session)
        if holder in urls:
            return urls[holder]
        owner = rendezvous_owner(bot_id, urls)
        assert owner is not None
        return urls[owner]
