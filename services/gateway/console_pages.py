"""The operator console under /console: server-rendered pages (Jinja2 templates in
console_templates/, htmx and the console's script and style in console_static/, nothing
from the internet) and their actions.

Every action calls the same code as a JSON route of the API (bot_api.py, pairing_api.py,
webhook_api.py, overview_api.py, media_api.py), so anything done here can be scripted.
A session comes from signing in with the operator token or a per-bot token
(console_session.py); a bot token's session sees only its own bot, and the pools and
failures pages are the operator's. Every POST carries the session's CSRF token. The live
parts (bots, pairing, conversation, pools) are fragments streamed by console_events.py."""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, Protocol
from urllib.parse import quote, urlencode

import segno
from aiohttp import web
from jinja2 import Environment, FileSystemLoader, select_autoescape

from services.common.errors import ChatbotError, InvalidInputError, NotFoundError
from services.common.store import BotConfig, BotConfigStore, WebhookDeadLetterStore
from services.gateway.bot_api import BotApi, shown_config
from services.gateway.console_session import (
    CSRF_FIELD,
    SIGN_IN_COOKIE,
    ConsoleSession,
    ConsoleSessions,
    csrf_ok,
    same_secret,
)
from services.gateway.media_api import MediaApi
from services.gateway.node_client import NodeClient
from services.gateway.overview_api import OverviewApi
from services.gateway.webhook_api import WebhookApi, shown

HERE = Path(__file__).parent
STATIC = HERE / "console_static"
_STATIC_TYPES: Mapping[str, str] = MappingProxyType({".js": "text/javascript", ".css": "text/css"})
_BOT_ID = re.compile(r"^[0-9A-Za-z@._:+-]{1,128}$")
# The configuration form's fields: (name, label, kind).
CONFIG_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("languages", "Languages (comma-separated codes, e.g. en, es)", "list"),
    ("media_storage_quota_gb", "Media storage quota (GB)", "number"),
    ("max_messages", "Messages kept per chat", "number"),
    ("max_characters", "Characters kept per chat", "number"),
    ("max_age_seconds", "Oldest message kept (seconds)", "number"),
    ("max_message_characters", "Characters per message", "number"),
    ("webhook_url", "Webhook URL", "url"),
    ("webhook_secret", "Webhook secret (blank: keep)", "password"),
    ("groups", "Group messages", "checkbox"),
    ("status", "Status updates", "checkbox"),
    ("newsletters", "Newsletters", "checkbox"),
    ("owner_messages", "Messages the owner sends", "checkbox"),
    ("group_events", "Group events", "checkbox"),
)


class DeadLetterStore(BotConfigStore, WebhookDeadLetterStore, Protocol):
    """Every configured bot's webhook dead letters (the failures page)."""


_WHY = 'the operator console (HTML, signed session cookie; README "Operator console")'
#: The console's paths (HTML pages, their forms, static files and event streams), left
#: out of the API's OpenAPI document (api_docs.py); every action among them calls the
#: code of a documented JSON route.
CONSOLE_PATHS: Mapping[str, str] = MappingProxyType({"/console": _WHY, "/console/*": _WHY})

Page = Callable[[web.Request, ConsoleSession], Awaitable[web.StreamResponse]]


def _bot_id(request: web.Request) -> str:
    bot_id = request.match_info["bot_id"]
    if not _BOT_ID.match(bot_id):
        raise InvalidInputError(f"bot id {bot_id[:140]!r} is not valid")
    return bot_id


def _redirect(location: str, notice: str | None = None, error: bool = False) -> web.HTTPFound:
    if notice is not None:
        location += "?" + urlencode({"error" if error else "notice": notice[:300]})
    return web.HTTPFound(location)


def templates() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "console_templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["urlpart"] = lambda value: quote(str(value), safe="")
    return env


class ConsolePages:
    def __init__(
        self,
        *,
        sessions: ConsoleSessions,
        bots: BotApi,
        overview: OverviewApi,
        media: MediaApi,
        webhooks: WebhookApi,
        dead_letters: DeadLetterStore,
        node: NodeClient,
        env: Environment,
    ) -> None:
        self._sessions = sessions
        self._bots = bots
        self._overview = overview
        self._media = media
        self._webhooks = webhooks
        self._dead_letters = dead_letters
        self._node = node
        self._env = env

    # --- plumbing --------------------------------------------------------------------

    def render(
        self, name: str, session: ConsoleSession | None, request: web.Request, **values: Any
    ) -> web.Response:
        html = self._env.get_template(name).render(
            session=session,
            csrf_field=CSRF_FIELD,
            notice=request.query.get("notice"),
            error=request.query.get("error"),
            path=request.path,
            **values,
        )
        response = web.Response(text=html, content_type="text/html")
        response.headers["Cache-Control"] = "no-store"
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self';"
            " frame-ancestors 'none'; form-action 'self'"
        )
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "same-origin"
        return response

    def fragment(self, name: str, **values: Any) -> str:
        return self._env.get_template(name).render(**values)

    def guard(
        self, page: Page, *, operator: bool = False, bot_route: bool = False
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        """Sign-in, the bot a session may see, the operator's pages, and CSRF on POST."""

        async def handler(request: web.Request) -> web.StreamResponse:
            session = await self._sessions.session(request)
            if session is None:
                if request.method == "GET" and not request.path.endswith("/events"):
                    raise web.HTTPFound("/console/sign-in?" + urlencode({"next": request.path}))
                ended = self.render(
                    "denied.html", None, request, reason="Your session has ended. Sign in again."
                )
                ended.set_status(401)
                return ended
            if bot_route and not session.may_see(request.match_info["bot_id"]):
                return self.denied(request, session, "This token may only see its own bot.")
            if operator and not session.is_operator:
                return self.denied(request, session, "Only the operator token opens this page.")
            if request.method == "POST" and not await csrf_ok(request, session.csrf):
                return self.denied(request, session, "The form's CSRF token is missing or wrong.")
            return await page(request, session)

        return handler

    def denied(self, request: web.Request, session: ConsoleSession, reason: str) -> web.Response:
        response = self.render("denied.html", session, request, reason=reason)
        response.set_status(403)
        return response

    def add_routes(self, app: web.Application) -> None:
        add_get, add_post = app.router.add_get, app.router.add_post
        add_get("/console", self.home)
        add_get("/console/static/{name}", self.static)
        add_get("/console/sign-in", self.sign_in_form)
        add_post("/console/sign-in", self.sign_in)
        add_post("/console/sign-out", self.guard(self.sign_out))
        add_get("/console/bots", self.guard(self.bots_page))
        bot = "/console/bots/{bot_id}"
        for action in ("start", "stop", "repair"):
            add_post(f"{bot}/{action}", self.guard(self.bot_action, bot_route=True))
        add_get(f"{bot}/config", self.guard(self.config_page, operator=True, bot_route=True))
        add_post(f"{bot}/config", self.guard(self.config_save, operator=True, bot_route=True))
        add_get(f"{bot}/pairing", self.guard(self.pairing_page, bot_route=True))
        add_get(f"{bot}/pairing/qr.png", self.guard(self.qr_png, bot_route=True))
        add_post(f"{bot}/pairing/code", self.guard(self.pairing_code, bot_route=True))
        add_get(f"{bot}/conversation", self.guard(self.conversation_page, bot_route=True))
        add_get("/console/pools", self.guard(self.pools_page, operator=True))
        add_get("/console/failures", self.guard(self.failures_page, operator=True))
        add_post("/console/failures/confirm", self.guard(self.failures_confirm, operator=True))
        add_post("/console/failures/apply", self.guard(self.failures_apply, operator=True))

    # --- sign-in -----------------------------------------------------------------------

    async def home(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/console/bots")

    async def static(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        path = STATIC / name
        if "/" in name or name.startswith(".") or path.suffix not in _STATIC_TYPES:
            raise web.HTTPNotFound()
        if not path.is_file():
            raise web.HTTPNotFound()
        return web.Response(
            body=path.read_bytes(),
            content_type=_STATIC_TYPES[path.suffix],
            headers={"Cache-Control": "max-age=300"},
        )

    async def sign_in_form(self, request: web.Request) -> web.StreamResponse:
        return self._sign_in_page(request)

    def _sign_in_page(
        self,
        request: web.Request,
        *,
        status: int = 200,
        next_path: str | None = None,
        form_error: str | None = None,
    ) -> web.Response:
        token, new = self._sessions.sign_in_csrf(request)
        response = self.render(
            "sign_in.html",
            None,
            request,
            next=next_path or _next(request),
            form_error=form_error,
            sign_in_csrf=token,
        )
        response.set_status(status)
        if new:
            self._sessions.remember_sign_in_csrf(response, token)
        return response

    async def sign_in(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        expected = request.cookies.get(SIGN_IN_COOKIE, "")
        given = form.get(CSRF_FIELD)
        if not (expected and isinstance(given, str) and same_secret(given, expected)):
            return self._sign_in_page(
                request, status=403, form_error="The sign-in form expired; try again."
            )
        token_text = form.get("token")
        target = _safe_next(form.get("next"))
        response = web.HTTPFound(target)
        session = None
        if isinstance(token_text, str) and token_text.strip():
            session = await self._sessions.sign_in(token_text, response)
        if session is None:
            return self._sign_in_page(
                request, status=401, next_path=target, form_error="That token is not valid."
            )
        raise response

    async def sign_out(self, request: web.Request, session: ConsoleSession) -> web.StreamResponse:
        response = web.HTTPFound("/console/sign-in")
        self._sessions.sign_out(response)
        raise response

    # --- bots --------------------------------------------------------------------------

    async def visible_bots(self, session: ConsoleSession) -> list[dict[str, Any]]:
        if session.is_operator:
            return await self._overview.bots()
        bot_id = session.principal.bot_id or ""
        try:
            return [await self._overview.overview(bot_id)]
        except NotFoundError:
            return []

    async def bots_fragment(self, session: ConsoleSession) -> str:
        bots = await self.visible_bots(session)
        return self.fragment("_bots.html", bots=bots, session=session, csrf_field=CSRF_FIELD)

    async def bots_page(self, request: web.Request, session: ConsoleSession) -> web.StreamResponse:
        return self.render(
            "bots.html", session, request, bots_html=await self.bots_fragment(session)
        )

    async def bot_action(self, request: web.Request, session: ConsoleSession) -> web.StreamResponse:
        bot_id = _bot_id(request)
        action = request.path.rsplit("/", 1)[1]
        try:
            if action == "stop":
                stopped = await self._bots.stop(bot_id)
                notice = f"Stopped {bot_id}: {stopped['jobs_parked']} media jobs parked."
            else:
                result, status = await self._bots.start(bot_id, force=action == "repair")
                if status != 200:
                    raise _redirect(
                        "/console/bots", f"Node did not start {bot_id}: {result['node']}", True
                    )
                notice = None
        except ChatbotError as problem:
            raise _redirect("/console/bots", str(problem), error=True) from None
        if notice is not None:
            raise _redirect("/console/bots", notice)
        raise web.HTTPFound(f"/console/bots/{quote(bot_id)}/pairing")

    async def config_page(
        self, request: web.Request, session: ConsoleSession
    ) -> web.StreamResponse:
        bot_id = _bot_id(request)
        config = await self._bots.stored_config(bot_id) or BotConfig(bot_id=bot_id)
        values = shown_config(config)
        values["webhook_secret"] = ""
        if isinstance(values.get("languages"), list):
            values["languages"] = ", ".join(str(v) for v in values["languages"])
        return self.render(
            "config.html",
            session,
            request,
            bot_id=bot_id,
            fields=CONFIG_FIELDS,
            values=values,
            errors={},
            has_secret=config.webhook_secret is not None,
        )

    async def config_save(
        self, request: web.Request, session: ConsoleSession
    ) -> web.StreamResponse:
        bot_id = _bot_id(request)
        form = await request.post()
        previous = await self._bots.stored_config(bot_id)
        document: dict[str, Any] = dict(previous.to_document()) if previous else {}
        values: dict[str, Any] = {}
        for name, _label, kind in CONFIG_FIELDS:
            raw = form.get(name)
            text = raw.strip() if isinstance(raw, str) else ""
            values[name] = text if kind != "checkbox" else raw is not None
            if kind == "checkbox":
                document[name] = raw is not None
            elif name == "webhook_secret":
                if text:
                    document[name] = text
            elif text == "":
                document.pop(name, None)
            elif kind == "number":
                document[name] = _number(text)
            elif kind == "list":
                document[name] = [part.strip() for part in text.split(",") if part.strip()]
            else:
                document[name] = text
        if not document.get("webhook_url"):
            document.pop("webhook_url", None)
            document.pop("webhook_secret", None)
        errors = _field_errors(bot_id, document)
        if not errors:
            try:
                await self._bots.save_config(bot_id, document)
            except ChatbotError as problem:
                field = "webhook_url" if "url" in str(problem).lower() else "_form"
                errors[field] = str(problem)
        if errors:
            values["webhook_secret"] = ""
            response = self.render(
                "config.html",
                session,
                request,
                bot_id=bot_id,
                fields=CONFIG_FIELDS,
                values=values,
                errors=errors,
                has_secret=previous is not None and previous.webhook_secret is not None,
            )
            response.set_status(400)
            return response
        raise _redirect("/console/bots", f"Saved the configuration of {bot_id}.")

    # --- pairing -----------------------------------------------------------------------

    async def pairing_state(self, bot_id: str) -> dict[str, Any]:
        """Node's view of the session: state, whether a QR code is pending and a
        fingerprint of it (the page reloads the image when WhatsApp rotates it)."""
        try:
            session = await self._node.session(bot_id)
        except ChatbotError as problem:
            return {"state": "NOT_STARTED", "detail": str(problem), "qr": None}
        qr = None
        if session.get("qrAvailable"):
            try:
                qr = hashlib.sha256((await self._node.qr(bot_id)).encode()).hexdigest()[:16]
            except ChatbotError:
                qr = None
        return {
            "state": str(session.get("state") or "UNKNOWN"),
            "detail": session.get("detail"),
            "updated_at": session.get("updatedAt"),
            "qr": qr,
        }

    async def pairing_fragment(self, bot_id: str) -> str:
        pairing = await self.pairing_state(bot_id)
        return self.fragment("_pairing.html", bot_id=bot_id, pairing=pairing)

    async def pairing_page(
        self, request: web.Request, session: ConsoleSession
    ) -> web.StreamResponse:
        bot_id = _bot_id(request)
        return self.render(
            "pairing.html",
            session,
            request,
            bot_id=bot_id,
            pairing_html=await self.pairing_fragment(bot_id),
            code=None,
            phone="",
            phone_error=None,
        )

    async def qr_png(self, request: web.Request, session: ConsoleSession) -> web.StreamResponse:
        try:
            qr = await self._node.qr(_bot_id(request))
        except ChatbotError:
            raise web.HTTPNotFound() from None
        image = io.BytesIO()
        segno.make(qr, error="l").save(image, kind="png", scale=6, border=4)
        return web.Response(
            body=image.getvalue(), content_type="image/png", headers={"Cache-Control": "no-store"}
        )

    async def pairing_code(
        self, request: web.Request, session: ConsoleSession
    ) -> web.StreamResponse:
        bot_id = _bot_id(request)
        form = await request.post()
        raw = form.get("phone_number")
        phone = raw if isinstance(raw, str) else ""
        code, problem = None, None
        try:
            code = await self._pairing_code(bot_id, phone)
        except ChatbotError as error:
            problem = str(error)
        response = self.render(
            "pairing.html",
            session,
            request,
            bot_id=bot_id,
            pairing_html=await self.pairing_fragment(bot_id),
            code=code,
            phone=phone,
            phone_error=problem,
        )
        if problem is not None:
            response.set_status(400)
        return response

    async def _pairing_code(self, bot_id: str, phone: str) -> str:
        digits = re.sub(r"[\s+()-]", "", phone)
        if not re.match(r"^[1-9][0-9]{6,14}$", digits):
            raise InvalidInputError(
                "Enter the bot's number in international format, e.g. +49 151 12345678."
            )
        return await self._node.pairing_code(bot_id, digits)

    # --- conversation ------------------------------------------------------------------

    async def conversation_fragment(self, bot_id: str) -> str:
        conversation = await self._overview.conversation(bot_id, 40)
        return self.fragment("_conversation.html", conversation=conversation)

    async def conversation_page(
        self, request: web.Request, session: ConsoleSession
    ) -> web.StreamResponse:
        bot_id = _bot_id(request)
        return self.render(
            "conversation.html",
            session,
            request,
            bot_id=bot_id,
            conversation_html=await self.conversation_fragment(bot_id),
        )

    # --- pools and failures ------------------------------------------------------------

    async def pools_fragment(self) -> str:
        return self.fragment("_pools.html", pools=await self._media.pools())

    async def pools_page(self, request: web.Request, session: ConsoleSession) -> web.StreamResponse:
        pools = await self._media.pools()
        return self.render(
            "pools.html",
            session,
            request,
            pools_html=self.fragment("_pools.html", pools=pools),
            definitions=pools["definitions"],
        )

    async def _failures(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        jobs = await self._media.failed_jobs(None, 200)
        letters = []
        for bot_id in await self._dead_letters.configured_bots():
            for letter in await self._dead_letters.webhook_dead_letters(bot_id, 0, 200):
                letters.append({**shown(letter), "bot_id": bot_id})
        return jobs, letters

    async def failures_page(
        self, request: web.Request, session: ConsoleSession
    ) -> web.StreamResponse:
        jobs, letters = await self._failures()
        return self.render("failures.html", session, request, jobs=jobs, letters=letters)

    async def failures_confirm(
        self, request: web.Request, session: ConsoleSession
    ) -> web.StreamResponse:
        form = await request.post()
        action = form.get("action")
        items = [i for i in form.getall("item", []) if isinstance(i, str)]
        if action not in ("requeue", "delete") or not items:
            raise _redirect(
                "/console/failures", "Select at least one failure, then an action.", True
            )
        return self.render("confirm.html", session, request, action=action, items=items)

    async def failures_apply(
        self, request: web.Request, session: ConsoleSession
    ) -> web.StreamResponse:
        form = await request.post()
        action = form.get("action")
        items = [i for i in form.getall("item", []) if isinstance(i, str)]
        if action not in ("requeue", "delete") or not items:
            raise _redirect("/console/failures", "Nothing to do.", True)
        done, problems = 0, []
        for item in items:
            try:
                await self._apply(str(action), item)
                done += 1
            except ChatbotError as problem:
                problems.append(f"{item}: {problem}")
        verb = {"requeue": "Requeued", "delete": "Deleted"}[str(action)]
        notice = f"{verb} {done} of {len(items)}."
        if problems:
            raise _redirect("/console/failures", notice + " " + "; ".join(problems), True)
        raise _redirect("/console/failures", notice)

    async def _apply(self, action: str, item: str) -> None:
        """One failure: `job:<media_processing_id>` or `webhook:<bot_id>:<sequence>`."""
        kind, _, rest = item.partition(":")
        if kind == "job":
            if action == "requeue":
                await self._media.requeue(rest)
            else:
                await self._media.delete(rest)
            return
        bot_id, _, sequence = rest.rpartition(":")
        if kind != "webhook" or not bot_id or not sequence.isdigit():
            raise InvalidInputError(f"{item!r} is not a failure")
        if action == "requeue":
            answer = await self._webhooks.retry(bot_id, int(sequence))
            if not answer["delivered"]:
                raise ChatbotError(f"still failing: {answer.get('reason')}")
        else:
            await self._webhooks.skip(bot_id, int(sequence))


def _next(request: web.Request) -> str:
    return _safe_next(request.query.get("next"))


def _safe_next(value: object) -> str:
    # Only a path of this console: never an open redirect.
    if isinstance(value, str) and re.match(r"^/console/[A-Za-z0-9/_.@:+-]*$", value):
        return value
    return "/console/bots"


def _number(text: str) -> int | float | str:
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text  # refused with the field's own message below


def _field_errors(bot_id: str, document: dict[str, Any]) -> dict[str, str]:
    """Each field checked alone, so every wrong field gets its own message."""
    errors: dict[str, str] = {}
    for name, _label, _kind in CONFIG_FIELDS:
        if name not in document:
            continue
        probe = {"bot_id": bot_id, name: document[name]}
        if name == "webhook_url":
            probe["webhook_secret"] = document.get("webhook_secret") or "set-apart"
        try:
            BotConfig.from_document(probe)
        except InvalidInputError as problem:
            errors[name] = str(problem).removeprefix("bot configuration: ")
    if not errors:
        try:
            BotConfig.from_document({**document, "bot_id": bot_id})
        except InvalidInputError as problem:
            message = str(problem).removeprefix("bot configuration: ")
            named = [n for n, _l, _k in CONFIG_FIELDS if n in message]
            errors[named[-1] if named else "_form"] = message
    return errors
