"""The SQLite adapter's identity map (`IdentityStore`): one row per (bot, phone JID),
unique on (bot, LID) as well, so a LID and a phone JID each map to one person."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from services.common.errors import InvalidInputError
from services.common.store._identity_types import IdentityPair, KnownIdentity, distinct_pairs
from services.common.store._sqlite_base import SqliteBase, _now_ms


def _check_bot(bot_id: str) -> None:
    if not bot_id:
        raise InvalidInputError("the identity map needs a non-empty bot_id")


class SqliteIdentities(SqliteBase):
    async def learn_identities(
        self, bot_id: str, pairs: Sequence[IdentityPair]
    ) -> list[IdentityPair]:
        _check_bot(bot_id)
        wanted = distinct_pairs(pairs)
        if not wanted:
            return []

        def learn(conn: sqlite3.Connection) -> list[IdentityPair]:
            learned: list[IdentityPair] = []
            now = _now_ms()
            for pair in wanted:
                # Both uniqueness rules at once: a pair naming a known LID or phone JID
                # (the same pair again, or a conflicting one) changes nothing.
                row = conn.execute(
                    "INSERT INTO identities (bot_id, phone_jid, lid, settled, learned_at)"
                    " VALUES (?, ?, ?, 0, ?) ON CONFLICT DO NOTHING RETURNING phone_jid",
                    (bot_id, pair.phone_jid, pair.lid, now),
                ).fetchone()
                if row is not None:
                    learned.append(pair)
            return learned

        learned: list[IdentityPair] = await self._write(learn)
        return learned

    async def identities(self, bot_id: str) -> list[KnownIdentity]:
        _check_bot(bot_id)
        rows = await self._read(
            lambda c: c.execute(
                "SELECT lid, phone_jid, settled FROM identities WHERE bot_id = ?"
                " ORDER BY phone_jid",
                (bot_id,),
            ).fetchall()
        )
        return [
            KnownIdentity(IdentityPair(lid, phone), bool(settled)) for lid, phone, settled in rows
        ]

    async def settle_identities(self, bot_id: str, phone_jids: Sequence[str]) -> int:
        _check_bot(bot_id)
        wanted = sorted(set(phone_jids))
        if not wanted:
            return 0

        def settle(conn: sqlite3.Connection) -> int:
            return sum(
                conn.execute(
                    "UPDATE identities SET settled = 1"
                    " WHERE bot_id = ? AND phone_jid = ? AND settled = 0",
                    (bot_id, phone),
                ).rowcount
                for phone in wanted
            )

        changed: int = await self._write(settle)
        return changed
