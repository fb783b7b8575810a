"""One bot's LID <-> phone JID pairs in memory: the id a chat is kept under.

Loaded from the store at StartBot and extended as pairs are learned (identities.py);
the store's rule holds here too: a LID and a phone JID each belong to one person, and
the first pair recorded for either wins."""

from __future__ import annotations

from services.common.store import IdentityPair


class IdentityMap:
    def __init__(self) -> None:
        self._lid_of: dict[str, str] = {}
        self._phone_of: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self._lid_of)

    def add(self, pair: IdentityPair) -> bool:
        """True when the pair is new; a pair naming a known LID or phone JID is ignored."""
        if pair.phone_jid in self._lid_of or pair.lid in self._phone_of:
            return False
        self._lid_of[pair.phone_jid] = pair.lid
        self._phone_of[pair.lid] = pair.phone_jid
        return True

    def knows(self, pair: IdentityPair) -> bool:
        return self._lid_of.get(pair.phone_jid) == pair.lid

    def conflicts(self, pair: IdentityPair) -> bool:
        """The pair names a LID or a phone JID that belongs to another pair."""
        lid = self._lid_of.get(pair.phone_jid)
        phone = self._phone_of.get(pair.lid)
        return (lid is not None and lid != pair.lid) or (
            phone is not None and phone != pair.phone_jid
        )

    def canonical(self, jid: str) -> str:
        """The LID of a phone JID whose LID is known; any other id unchanged."""
        return self._lid_of.get(jid, jid)

    def phone_of(self, lid: str) -> str | None:
        """The phone JID of a known LID."""
        return self._phone_of.get(lid)

    def is_alias(self, jid: str) -> bool:
        """A phone JID that is kept under its LID."""
        return jid in self._lid_of
