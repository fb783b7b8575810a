"""The identity map's value types: one person's LID and phone-number JID for a bot."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from services.common.errors import InvalidInputError

LID_SUFFIX = "@lid"
PHONE_SUFFIX = "@s.whatsapp.net"


@dataclass(frozen=True, slots=True)
class IdentityPair:
    """A LID (`<n>@lid`) and the phone-number JID (`<digits>@s.whatsapp.net`) of the same
    person; checked here, so no adapter ever stores half a pair or a group id."""

    lid: str
    phone_jid: str

    def __post_init__(self) -> None:
        user = self.lid.removesuffix(LID_SUFFIX)
        if not self.lid.endswith(LID_SUFFIX) or not user or "@" in user:
            raise InvalidInputError(f"identity pair: lid must be <id>@lid, got {self.lid!r}")
        digits = self.phone_jid.removesuffix(PHONE_SUFFIX)
        if not self.phone_jid.endswith(PHONE_SUFFIX) or not digits.isdigit():
            raise InvalidInputError(
                f"identity pair: phone_jid must be <digits>{PHONE_SUFFIX}, got {self.phone_jid!r}"
            )

    @property
    def phone(self) -> str:
        """The E.164 digits (no plus) of the phone JID."""
        return self.phone_jid.removesuffix(PHONE_SUFFIX)


@dataclass(frozen=True, slots=True)
class KnownIdentity:
    """A pair in the store. `settled` once queue_svc has merged the phone JID's queue into
    the LID's and the identity event (if one was due) is durable; an unsettled pair is
    settled again by the next StartBot."""

    pair: IdentityPair
    settled: bool


def distinct_pairs(pairs: Iterable[IdentityPair]) -> list[IdentityPair]:
    """The pairs with every LID and every phone JID used once: a later pair that names
    either again is dropped (first one wins, as in the store)."""
    lids: set[str] = set()
    phones: set[str] = set()
    kept: list[IdentityPair] = []
    for pair in pairs:
        if pair.lid in lids or pair.phone_jid in phones:
            continue
        lids.add(pair.lid)
        phones.add(pair.phone_jid)
        kept.append(pair)
    return kept
