"""The console's live parts as Server-Sent Events: each stream renders its page's
fragment every GATEWAY_CONSOLE_REFRESH_SECONDS and sends it (event `update`, the HTML as
data) when it differs from the last one sent; console.js swaps it into the page. Reading
the store on a timer (not a change feed) keeps every gateway replica able to serve every
stream; a comment line every interval lets the server notice a closed tab."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from aiohttp import web

from services.common.errors import ChatbotError
from services.gateway.console_pages import ConsolePages, _bot_id
from services.gateway.console_session import ConsoleSession

Render = Callable[[], Awaitable[str]]


class ConsoleEvents:
    def __init__(self, pages: ConsolePages, refresh_seconds: float) -> None:
        self._pages = pages
        self._refresh = refresh_seconds
        self._closing: asyncio.Event | None = None

    def add_routes(self, app: web.Application) -> None:
        guard = self._pages.guard
        app.router.add_get("/console/bots/events", guard(self.bots))
        bot = "/console/bots/{bot_id}"
        app.router.add_get(f"{bot}/pairing/events", guard(self.pairing, bot_route=True))
        app.router.add_get(f"{bot}/conversation/events", guard(self.conversation, bot_route=True))
        app.router.add_get("/console/pools/events", guard(self.pools, operator=True))
        app.on_shutdown.append(self._close)

    async def _close(self, _: web.Application) -> None:
        if self._closing is not None:
            self._closing.set()

    async def bots(self, request: web.Request, session: ConsoleSession) -> web.StreamResponse:
        return await self._stream(request, lambda: self._pages.bots_fragment(session))

    async def pairing(self, request: web.Request, session: ConsoleSession) -> web.StreamResponse:
        bot_id = _bot_id(request)
        return await self._stream(request, lambda: self._pages.pairing_fragment(bot_id))

    async def conversation(
        self, request: web.Request, session: ConsoleSession
    ) -> web.StreamResponse:
        bot_id = _bot_id(request)
        return await self._stream(request, lambda: self._pages.conversation_fragment(bot_id))

    async def pools(self, request: web.Request, session: ConsoleSession) -> web.StreamResponse:
        return await self._stream(request, self._pages.pools_fragment)

    async def _stream(self, request: web.Request, render: Render) -> web.StreamResponse:
        if self._closing is None:
            self._closing = asyncio.Event()
        closing = self._closing
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        last = None
        try:
            # The browser reconnects after this many milliseconds if the stream drops.
            await response.write(b"retry: 2000\n\n")
            while not closing.is_set():
                try:
                    html = await render()
                except ChatbotError as problem:
                    html = f'<p class="problem" role="alert">{_escape(str(problem))}</p>'
                if html != last:
                    data = "".join(f"data: {line}\n" for line in html.splitlines() or [""])
                    await response.write(f"event: update\n{data}\n".encode())
                    last = html
                else:
                    await response.write(b": idle\n\n")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(closing.wait(), self._refresh)
        except (ConnectionResetError, ConnectionError):
            pass  # the tab was closed
        return response


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
