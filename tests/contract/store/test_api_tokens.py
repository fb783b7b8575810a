"""Per-bot API tokens (hashes only) on every leg: create, look up, list, revoke."""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta

import pytest

from services.common.errors import InvalidInputError
from services.common.store import ApiToken, Store, truncate_to_millis


def _token(bot_id: str, label: str = "", age_seconds: float = 0) -> ApiToken:
    created = truncate_to_millis(datetime.now(UTC) - timedelta(seconds=age_seconds))
    digest = hashlib.sha256(secrets.token_bytes(32)).hexdigest()
    return ApiToken(secrets.token_hex(8), bot_id, digest, created, label)


async def test_a_token_round_trips_and_a_second_create_of_its_id_changes_nothing(
    store: Store,
) -> None:
    token = _token("bot-a", "builder")
    assert await store.get_api_token(token.token_id) is None
    assert await store.create_api_token(token) is True
    assert await store.get_api_token(token.token_id) == token
    other = ApiToken(token.token_id, "bot-b", "0" * 64, token.created_at)
    assert await store.create_api_token(other) is False
    assert await store.get_api_token(token.token_id) == token


async def test_listing_is_per_bot_oldest_first(store: Store) -> None:
    newer, older = _token("bot-a", age_seconds=1), _token("bot-a", age_seconds=5)
    elsewhere = _token("bot-b")
    for token in (newer, older, elsewhere):
        assert await store.create_api_token(token)
    assert await store.list_api_tokens("bot-a") == [older, newer]
    assert await store.list_api_tokens("bot-b") == [elsewhere]
    assert await store.list_api_tokens("bot-c") == []


async def test_revoking_needs_the_owning_bot(store: Store) -> None:
    token = _token("bot-a")
    await store.create_api_token(token)
    assert await store.revoke_api_token("bot-b", token.token_id) is False
    assert await store.get_api_token(token.token_id) == token
    assert await store.revoke_api_token("bot-a", token.token_id) is True
    assert await store.get_api_token(token.token_id) is None
    assert await store.revoke_api_token("bot-a", token.token_id) is False


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"token_id": "NOT-HEX"}, "token id"),
        ({"bot_id": ""}, "bot_id"),
        ({"secret_sha256": "plain-secret"}, "SHA-256"),
        ({"label": "x" * 201}, "label"),
    ],
)
async def test_bad_tokens_are_refused_and_store_nothing(
    store: Store, change: dict[str, str], message: str
) -> None:
    good = _token("bot-a")
    bad = ApiToken(**{**good.__dict__, **change})
    with pytest.raises(InvalidInputError, match=message):
        await store.create_api_token(bad)
    assert await store.list_api_tokens("bot-a") == []
    with pytest.raises(InvalidInputError, match="token id"):
        await store.get_api_token("../etc")
