"""The console's signed session cookie against a real SQLite store: who signed in comes
back only from an untouched, unexpired cookie signed under the current operator token,
and a bot token's session ends when the token is revoked."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from services.common.store import Store, StoreConfig, open_store
from services.gateway.api_auth import ApiAuth, new_bot_token
from services.gateway.console_session import COOKIE, CSRF_HEADER, ConsoleSessions, csrf_ok

OPERATOR = "operator-token-for-the-console"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await open_store(StoreConfig(backend="sqlite", sqlite_path=tmp_path / "s.sqlite3"))
    yield opened
    await opened.close()


def _sessions(store: Store, operator: str = OPERATOR, lifetime: float = 3600) -> ConsoleSessions:
    return ConsoleSessions(ApiAuth(operator, store), operator, lifetime, secure_cookie=True)


async def _cookie(sessions: ConsoleSessions, token: str) -> str | None:
    response = web.Response()
    if await sessions.sign_in(token, response) is None:
        return None
    morsel = response.cookies[COOKIE]
    assert morsel["httponly"] and morsel["samesite"] == "Strict" and morsel["secure"]
    assert morsel["path"] == "/console"
    return morsel.value


def _request(cookie: str, headers: dict[str, str] | None = None) -> web.Request:
    return make_mocked_request(
        "GET", "/console/bots", headers={"Cookie": f"{COOKIE}={cookie}", **(headers or {})}
    )


async def test_the_operator_signs_in_and_a_touched_cookie_is_refused(store: Store) -> None:
    sessions = _sessions(store)
    assert await _cookie(sessions, "wrong") is None
    cookie = await _cookie(sessions, OPERATOR)
    assert cookie is not None
    session = await sessions.session(_request(cookie))
    assert session is not None and session.is_operator and session.may_see("any-bot")
    payload, _, signature = cookie.partition(".")
    for forged in (f"{payload}.{signature[:-2]}AA", f"{payload}A.{signature}", payload, ""):
        assert await sessions.session(_request(forged)) is None, forged
    # A new operator token ends every session signed under the old one.
    assert await _sessions(store, "rotated-operator-token").session(_request(cookie)) is None


async def test_an_expired_session_is_refused(store: Store) -> None:
    sessions = _sessions(store, lifetime=-1)
    cookie = await _cookie(sessions, OPERATOR)
    assert cookie is not None
    assert await sessions.session(_request(cookie)) is None


async def test_a_bot_session_sees_its_bot_until_the_token_is_revoked(store: Store) -> None:
    text, record = new_bot_token("bot-a", "console")
    assert await store.create_api_token(record)
    sessions = _sessions(store)
    cookie = await _cookie(sessions, text)
    assert cookie is not None
    session = await sessions.session(_request(cookie))
    assert session is not None and not session.is_operator
    assert session.may_see("bot-a") and not session.may_see("bot-b")
    assert await store.revoke_api_token("bot-a", record.token_id)
    assert await sessions.session(_request(cookie)) is None


async def test_csrf_token_must_match_the_session(store: Store) -> None:
    sessions = _sessions(store)
    cookie = await _cookie(sessions, OPERATOR)
    assert cookie is not None
    session = await sessions.session(_request(cookie))
    assert session is not None
    assert await csrf_ok(_request(cookie, {CSRF_HEADER: session.csrf}), session.csrf)
    assert not await csrf_ok(_request(cookie, {CSRF_HEADER: "guess"}), session.csrf)
    assert not await csrf_ok(_request(cookie, {CSRF_HEADER: ""}), "")
