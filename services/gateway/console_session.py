"""The operator console's sign-in session: a signed cookie, so every gateway replica
accepts it without shared state.

The cookie holds who signed in (the operator, or one bot's token id), a CSRF token and
an expiry, signed with HMAC-SHA256 under a key derived from GATEWAY_API_TOKEN: rotating
the operator token ends every console session. A bot token's session is checked against
the store on every request, so revoking the token ends it too. The cookie is HttpOnly
and SameSite=Strict; every POST must also carry the session's CSRF token (a form field or
the X-CSRF-Token header), compared in constant time."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

from aiohttp import web

from services.gateway.api_auth import ApiAuth, Principal

COOKIE = "console_session"
# The sign-in form's own CSRF token (double submit: cookie and form field), before a
# session exists.
SIGN_IN_COOKIE = "console_sign_in"
CSRF_FIELD = "csrf"
CSRF_HEADER = "X-CSRF-Token"
PATH = "/console"


@dataclass(frozen=True)
class ConsoleSession:
    principal: Principal
    csrf: str
    expires_at: int

    @property
    def is_operator(self) -> bool:
        return self.principal.is_operator

    def may_see(self, bot_id: str) -> bool:
        return self.principal.is_operator or self.principal.bot_id == bot_id


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class ConsoleSessions:
    def __init__(
        self, auth: ApiAuth, operator_token: str, lifetime_seconds: float, secure_cookie: bool
    ) -> None:
        self._auth = auth
        self._key = hmac.new(operator_token.encode(), b"console-session", hashlib.sha256).digest()
        self._lifetime = lifetime_seconds
        self._secure = secure_cookie

    def _sign(self, payload: bytes) -> str:
        return _b64(hmac.new(self._key, payload, hashlib.sha256).digest())

    async def sign_in(self, token: str, response: web.StreamResponse) -> ConsoleSession | None:
        """A session for `token` (set on `response`), or None when it is no valid token."""
        principal = await self._auth.principal(token.strip())
        if principal is None:
            return None
        session = ConsoleSession(
            principal, secrets.token_urlsafe(24), int(time.time() + self._lifetime)
        )
        payload = json.dumps(
            {
                "b": principal.bot_id,
                "t": principal.token_id,
                "c": session.csrf,
                "e": session.expires_at,
            },
            separators=(",", ":"),
        ).encode()
        value = f"{_b64(payload)}.{self._sign(payload)}"
        self._set_cookie(response, COOKIE, value, int(self._lifetime))
        response.del_cookie(SIGN_IN_COOKIE, path=PATH)
        return session

    def _set_cookie(self, response: web.StreamResponse, name: str, value: str, age: int) -> None:
        response.set_cookie(
            name,
            value,
            max_age=age,
            path=PATH,
            httponly=True,
            samesite="Strict",
            secure=self._secure,
        )

    def sign_out(self, response: web.StreamResponse) -> None:
        response.del_cookie(COOKIE, path=PATH)

    async def session(self, request: web.Request) -> ConsoleSession | None:
        """The request's valid session, or None (absent, forged, expired, revoked)."""
        value = request.cookies.get(COOKIE, "")
        encoded, _, signature = value.partition(".")
        if not encoded or not signature:
            return None
        try:
            payload = _unb64(encoded)
            expected = self._sign(payload)
            if not hmac.compare_digest(expected.encode(), signature.encode()):
                return None
            fields = json.loads(payload)
        except ValueError:
            return None
        expires_at, csrf = fields.get("e"), fields.get("c")
        if not isinstance(expires_at, int) or not isinstance(csrf, str):
            return None
        if expires_at < time.time():
            return None
        bot_id, token_id = fields.get("b"), fields.get("t")
        if bot_id is None:
            return ConsoleSession(Principal(), csrf, expires_at)
        if not isinstance(bot_id, str) or not isinstance(token_id, str):
            return None
        if not await self._auth.token_valid(token_id, bot_id):
            return None
        return ConsoleSession(Principal(bot_id=bot_id, token_id=token_id), csrf, expires_at)

    def sign_in_csrf(self, request: web.Request) -> tuple[str, bool]:
        """The sign-in form's CSRF token: the one its cookie holds, else a new one (True:
        set it with `remember_sign_in_csrf`)."""
        token = request.cookies.get(SIGN_IN_COOKIE)
        if token:
            return token, False
        return secrets.token_urlsafe(24), True

    def remember_sign_in_csrf(self, response: web.StreamResponse, token: str) -> None:
        self._set_cookie(response, SIGN_IN_COOKIE, token, 3600)


def same_secret(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(errors="replace"), expected.encode())


async def csrf_ok(request: web.Request, expected: str) -> bool:
    """True when the POST carries `expected` (header or form field)."""
    given = request.headers.get(CSRF_HEADER)
    if given is None:
        form = await request.post()
        field = form.get(CSRF_FIELD)
        given = field if isinstance(field, str) else ""
    return bool(expected) and same_secret(given, expected)
