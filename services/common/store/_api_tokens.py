"""Per-bot API tokens as the store keeps them: only a hash of the secret, never the
secret itself (the gateway hands the secret out once, when it issues the token).

A token reads `bot.<token_id>.<secret>`: the id finds the record, then the secret's hash
is compared in constant time, so looking a token up never compares secrets in SQL or
in a MongoDB index. The rules both adapters follow are here, written once."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from services.common.errors import InvalidInputError

# 16 hex characters: an id, not a secret (it appears in listings and logs).
TOKEN_ID = re.compile(r"[0-9a-f]{16}")
# A SHA-256 digest in hex; tokens carry 256 random bits, so a slow hash adds nothing.
TOKEN_HASH = re.compile(r"[0-9a-f]{64}")
MAX_LABEL_CHARACTERS = 200


@dataclass(frozen=True)
class ApiToken:
    """One per-bot token: which bot it may read and steer, and how to recognise it."""

    token_id: str
    bot_id: str
    secret_sha256: str
    created_at: datetime
    label: str = ""


def check_token_id(token_id: str) -> None:
    if not isinstance(token_id, str) or not TOKEN_ID.fullmatch(token_id):
        raise InvalidInputError(f"a token id is 16 lower-case hex characters, got {token_id!r}")


def check_api_token(token: ApiToken) -> None:
    check_token_id(token.token_id)
    if not isinstance(token.bot_id, str) or not token.bot_id:
        raise InvalidInputError("an API token needs a non-empty bot_id")
    if not isinstance(token.secret_sha256, str) or not TOKEN_HASH.fullmatch(token.secret_sha256):
        raise InvalidInputError("secret_sha256 must be a SHA-256 digest in lower-case hex")
    if not isinstance(token.label, str) or len(token.label) > MAX_LABEL_CHARACTERS:
        raise InvalidInputError(f"a token label is a string of at most {MAX_LABEL_CHARACTERS}")
    if token.created_at.tzinfo is None:
        raise InvalidInputError("created_at must be timezone-aware (UTC)")
