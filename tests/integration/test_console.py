"""The operator console in a real browser (Playwright driving Debian's chromium, launched
by path) against the demo stack: queue_svc, media_svc, the gateway and the Node server
whose WhatsApp socket is the demo script's.

One walk through every page: sign in with the keyboard, fix a configuration the form
refused field by field, start a bot, see its QR code and the session open, watch a voice
note go placeholder → text, find the job of a download that failed for good, requeue it
and see the pool's depth change, and check a bot token cannot open another bot's pages.
media_svc is paused (SIGSTOP) where the test must see work waiting: a busy replica, not a
race with the browser. Every page is checked with axe-core (no serious or critical
violation) and photographed at 1280 and 360 px wide into docs/console/."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from services.common.store import StoreConfig, WebhookDeadLetter, open_store
from tests.helpers import demo_media
from tests.helpers.node_server import NodeServer, start_node_server
from tests.helpers.processes import (
    REPO,
    Service,
    free_port,
    gateway_env,
    media_env,
    queue_env,
    start_service,
)

playwright_api = pytest.importorskip("playwright.async_api")

CHROMIUM = Path("/usr/bin/chromium")
AXE = REPO / "node_modules" / "axe-core" / "axe.min.js"
# A test run must not leave the checkout modified (the pictures hold times and ids), so the
# screenshots go under var/ unless CONSOLE_SCREENSHOTS_DIR names another place:
# `CONSOLE_SCREENSHOTS_DIR=docs/console pytest tests/integration/test_console.py` refreshes
# the README's pictures.
SHOTS = REPO / os.environ.get("CONSOLE_SCREENSHOTS_DIR", "var/console-screenshots")
BOT = "console-bot"
OTHER = "other-bot"
API_TOKEN = "console-operator-token"
WS_TOKEN = "console-ws-token"
ALICE = "4915100000001@s.whatsapp.net"
WIDTHS = {"desktop": (1280, 900), "phone": (360, 780)}
# Generous for a loaded 2-core machine: Whisper loads on the first voice note.
SLOW_MS = 90_000


@dataclass
class Stack:
    url: str
    node: NodeServer
    media: Service
    voice_words: tuple[str, ...]
    db: Path

    def pause_media(self) -> None:
        os.kill(self.media.process.pid, signal.SIGSTOP)

    def resume_media(self) -> None:
        os.kill(self.media.process.pid, signal.SIGCONT)


def _browser_tools_present() -> bool:
    return CHROMIUM.exists() and AXE.exists()


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    if not _browser_tools_present():
        # make test installs both (apt, npm): their absence is a broken setup.
        pytest.fail(f"{CHROMIUM} or {AXE} is missing")
    media_dir = tmp_path / "media"
    media_dir.mkdir()
    voice = demo_media.english_voice_note(media_dir)
    script = tmp_path / "script.json"
    script.write_text(
        json.dumps(
            {
                "bots": {
                    BOT: [
                        {"from": ALICE, "type": "text", "text": "Hello from the console test"},
                        {
                            "type": "voice_note",
                            "file": str(voice.path),
                            "mimetype": "audio/ogg; codecs=opus",
                        },
                        # Node cannot download it: the job fails for good.
                        {"type": "voice_note", "file": str(voice.path), "download_fails": True},
                    ],
                    OTHER: [],
                },
                # Scanned late enough for the page to show the code first.
                "pairing": {BOT: {"rotate_ms": 1500, "scan_after_ms": 6000}},
            }
        )
    )
    db, staging = tmp_path / "store.sqlite3", tmp_path / "staging"
    services: list[Service] = []
    node: NodeServer | None = None
    try:
        queue = await start_service("services.queue_svc", queue_env(db), tmp_path / "queue.log")
        services.append(queue)
        metrics_port = free_port()
        media = await start_service(
            "services.media_svc",
            media_env(
                db,
                staging,
                queue.address,
                MEDIA_LEASE_SECONDS="30",
                MEDIA_SVC_METRICS_PORT=str(metrics_port),
            ),
            tmp_path / "media.log",
        )
        services.append(media)
        node_port = free_port()
        gateway = await start_service(
            "services.gateway",
            {
                **gateway_env(
                    db,
                    queue.address,
                    f"http://127.0.0.1:{node_port}",
                    node_ws_token=WS_TOKEN,
                    api_token=API_TOKEN,
                    node_api_token="node-api-token",
                ),
                "GATEWAY_MEDIA_SVC_ADDRESSES": media.address,
                "GATEWAY_MEDIA_SVC_METRICS_URLS": f"http://127.0.0.1:{metrics_port}/metrics",
                "GATEWAY_CONSOLE_REFRESH_SECONDS": "0.3",
            },
            tmp_path / "gateway.log",
        )
        services.append(gateway)
        node = await start_node_server(
            tmp_path / "node",
            script,
            gateway_ws_url=f"ws://{gateway.address}/ws",
            gateway_token=WS_TOKEN,
            log_path=tmp_path / "node.log",
            port=node_port,
            extra_env={"MEDIA_STAGING_DIR": str(staging)},
        )
        yield Stack(f"http://{gateway.address}", node, media, voice.expect, db)
    finally:
        if services and len(services) > 1:
            # Never leave media_svc stopped: its SIGTERM would wait forever.
            os.kill(services[1].process.pid, signal.SIGCONT)
        if node is not None:
            await node.stop()
        for service in reversed(services):
            await service.stop()


async def _api(
    http: aiohttp.ClientSession, method: str, url: str, token: str, body: Any = None
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    async with http.request(method, url, json=body, headers=headers) as response:
        return response.status, await response.json()


async def _dead_letter(db: Path) -> None:
    """A webhook delivery the relay gave up on (the relay is not part of this stack)."""
    store = await open_store(StoreConfig(backend="sqlite", sqlite_path=db))
    try:
        now = datetime.now(UTC)
        await store.put_webhook_dead_letter(
            WebhookDeadLetter(
                bot_id=BOT,
                sequence=1,
                correspondent_id=ALICE,
                body=json.dumps({"bot_id": BOT, "sequence": 1}),
                attempts=5,
                outcome="http_500",
                status=500,
                reason="the webhook answered HTTP 500",
                first_attempt_at=now - timedelta(minutes=3),
                last_attempt_at=now,
                dead_lettered_at=now,
            )
        )
    finally:
        await store.close()


class Pages:
    """The browser page, with the checks every console page gets."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.violations: dict[str, list[str]] = {}

    async def check(self, name: str) -> None:
        """axe-core on the page as it is, then screenshots at both widths (the phone
        width must not scroll sideways)."""
        await self.page.add_script_tag(path=str(AXE))
        result = await self.page.evaluate(
            "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
            ".filter(v => v.impact === 'serious' || v.impact === 'critical')"
            ".map(v => v.id + ': ' + v.nodes.map(n => n.target.join(' ')).join(', '))"
        )
        if result:
            self.violations[name] = result
        SHOTS.mkdir(parents=True, exist_ok=True)
        for label, (width, height) in WIDTHS.items():
            await self.page.set_viewport_size({"width": width, "height": height})
            overflow = await self.page.evaluate(
                "() => document.documentElement.scrollWidth - window.innerWidth"
            )
            assert overflow <= 0, f"{name} scrolls sideways by {overflow} px at {width} px"
            await self.page.screenshot(path=str(SHOTS / f"{name}-{label}.png"), full_page=True)
        await self.page.set_viewport_size({"width": 1280, "height": 900})


# About 90 s on a quiet 2-core machine (Whisper loads on the first voice note); more
# under load.
@pytest.mark.timeout(300)
async def test_an_operator_pairs_watches_and_steers_a_bot_in_the_console(stack: Stack) -> None:
    base = stack.url
    async with aiohttp.ClientSession() as http:
        for bot in (BOT, OTHER):
            status, body = await _api(http, "PUT", f"{base}/bots/{bot}/config", API_TOKEN, {})
            assert status == 200, body
        status, issued = await _api(
            http, "POST", f"{base}/bots/{OTHER}/tokens", API_TOKEN, {"label": "console test"}
        )
        assert status == 201, issued
        other_token = issued["token"]

    async with playwright_api.async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"]
        )
        # axe is injected as a script of its own: the console's CSP allows only its files.
        context = await browser.new_context(
            viewport={"width": 1280, "height": 900}, bypass_csp=True
        )
        page = await context.new_page()
        page.set_default_timeout(30_000)
        pages = Pages(page)
        try:
            await _walk(page, pages, stack, base, other_token)
        finally:
            await context.close()
            await browser.close()
    assert pages.violations == {}, json.dumps(pages.violations, indent=2)


async def _walk(page: Any, pages: Pages, stack: Stack, base: str, other_token: str) -> None:
    expect = playwright_api.expect
    # --- sign-in, by keyboard; a wrong token is refused -------------------------------
    await page.goto(f"{base}/console/bots")
    assert page.url.startswith(f"{base}/console/sign-in"), page.url
    await pages.check("sign-in")
    await page.focus("#token")
    await page.keyboard.type("not-a-token")
    await page.keyboard.press("Enter")
    await expect(page.locator("#token-error")).to_contain_text("not valid")
    await page.fill("#token", API_TOKEN)
    await page.keyboard.press("Enter")
    await expect(page.locator("h1")).to_have_text("Bots")
    cookie = next(c for c in await page.context.cookies() if c["name"] == "console_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    # A POST without the session's CSRF token is refused, and changes nothing.
    refused = await page.request.post(f"{base}/console/bots/{BOT}/start", form={"csrf": "x"})
    assert refused.status == 403
    # The cookie opens the console, not the JSON API (that takes the bearer token).
    assert (await page.request.get(f"{base}/bots/{BOT}/overview")).status == 401
    card = page.locator(f'li[data-bot="{BOT}"]')
    await expect(card.get_by_test_id("state")).to_have_text("unknown")
    await pages.check("bots")

    # --- configuration: each wrong field is named next to it --------------------------
    await card.get_by_role("link", name=f"Configure {BOT}").click()
    await page.fill("#f-max_messages", "many")
    await page.fill("#f-webhook_url", "ftp://example.org/hook")
    await page.get_by_role("button", name="Save").click()
    await expect(page.locator("#e-max_messages")).to_contain_text("max_messages")
    await expect(page.locator("#e-webhook_url")).to_be_visible()
    await expect(page.locator("#f-max_messages")).to_have_attribute("aria-invalid", "true")
    await pages.check("config")
    await page.fill("#f-max_messages", "80")
    await page.fill("#f-webhook_url", "")
    await page.get_by_role("button", name="Save").click()
    await expect(page.locator(".notice")).to_contain_text("Saved the configuration")

    # --- start, QR code, session open ------------------------------------------------
    # A busy media_svc: the media of the conversation waits where the browser can see it.
    stack.pause_media()
    await page.locator(f'li[data-bot="{BOT}"]').get_by_role("button", name=f"Start {BOT}").click()
    qr = page.locator("#qr")
    await expect(qr).to_be_visible()
    await expect(page.locator("#session-state")).to_have_text("qr required")
    # The image decodes (a rotation may swap it while the browser fetches it).
    await page.wait_for_function(
        "() => { const i = document.querySelector('#qr');"
        " return i !== null && i.complete && i.naturalWidth > 0; }"
    )
    shown = [e for e in stack.node.events if e.get("event") == "qr_shown" and e.get("botId") == BOT]
    assert shown, "the demo socket never showed a QR code"
    await pages.check("pairing")
    await expect(page.locator("#session-open")).to_be_visible(timeout=SLOW_MS)
    await expect(qr).to_have_count(0)

    # --- conversation: the voice note waits as a placeholder, then becomes text ---------
    await page.get_by_role("link", name="Open the conversation view").click()
    await expect(page.locator(".message[data-kind='text'] .content")).to_contain_text(
        "Hello from the console test", timeout=SLOW_MS
    )
    placeholders = page.locator(".message.placeholder[data-kind='voice_note']")
    await expect(placeholders).to_have_count(2, timeout=SLOW_MS)
    await pages.check("conversation-placeholders")
    await page.goto(f"{base}/console/pools")
    audio = page.locator('tr[data-pool="Audio"] td[data-col="pending"]')
    await expect(audio).to_have_text("1")
    stack.resume_media()
    await page.goto(f"{base}/console/bots/{BOT}/conversation")
    voice = page.locator(".message[data-kind='voice_note'] .content")
    await expect(placeholders).to_have_count(0, timeout=SLOW_MS)
    await expect(voice).to_have_count(2, timeout=SLOW_MS)
    texts = " ".join(await voice.all_inner_texts()).lower()
    for word in stack.voice_words:
        assert word.lower() in texts, (word, texts)
    # A reply, sent through the API, shows with WhatsApp's answer (the demo socket's).
    sent = await page.request.post(
        f"{base}/bots/{BOT}/messages",
        headers={"Authorization": f"Bearer {API_TOKEN}", "Idempotency-Key": "console-reply-1"},
        data={"correspondent_id": ALICE, "text": "See you on Friday afternoon."},
    )
    assert sent.status == 202, await sent.text()
    reply = page.locator(".message.reply[data-status='sent']")
    await expect(reply).to_have_count(1, timeout=SLOW_MS)
    await expect(reply).to_contain_text("WhatsApp id")
    await pages.check("conversation")
    # The pools page reads media_svc's counters: the start of the rates' window.
    await page.goto(f"{base}/console/pools")
    await expect(page.locator('tr[data-pool="Audio"] td[data-col="pending"]')).to_have_text("0")

    # --- failures: a webhook dead letter skipped, the failed download requeued ---------
    await _dead_letter(stack.db)
    await page.get_by_role("link", name="Failures").click()
    failure = page.locator(".failure[data-media-id]")
    await expect(failure).to_have_count(1)
    await expect(failure.locator(".reason")).not_to_be_empty()
    letter = page.locator(".failure[data-letter]")
    await expect(letter.locator(".reason")).to_contain_text("HTTP 500")
    await pages.check("failures")
    await letter.locator("input[type=checkbox]").check()
    await page.get_by_role("button", name="Delete selected").click()
    await expect(page.locator("h1")).to_have_text("Delete 1 failure?")
    await page.get_by_role("button", name="Yes, delete").click()
    await expect(page.locator(".notice")).to_have_text("Deleted 1 of 1.")
    await expect(letter).to_have_count(0)
    await failure.locator("input[type=checkbox]").focus()
    await page.keyboard.press("Space")
    await expect(failure.locator("input[type=checkbox]")).to_be_checked()
    # Held back so the requeued job is seen waiting in its pool.
    stack.pause_media()
    await page.get_by_role("button", name="Requeue selected").click()
    await expect(page.locator("h1")).to_have_text("Requeue 1 failure?")
    await pages.check("confirm")
    await page.get_by_role("button", name="Yes, requeue").click()
    await expect(page.locator(".notice")).to_have_text("Requeued 1 of 1.")
    await expect(failure).to_have_count(0)
    await page.goto(f"{base}/console/pools")
    corrupt = page.locator('tr[data-pool="Corrupt"] td[data-col="pending"]')
    await expect(corrupt).to_have_text("1")
    stack.resume_media()
    # Live: the same page follows the depth back down as media_svc works again, and the
    # requeued job, failed again, is the pool's failure rate since the window began.
    await expect(corrupt).to_have_text("0", timeout=SLOW_MS)
    rate = page.locator('tr[data-pool="Corrupt"] [data-col="failure-rate"]')
    await expect(rate).to_have_text("100 %", timeout=SLOW_MS)
    await pages.check("pools")
    # The same failure through the JSON API: listed, deleted once (then 404), not by a
    # bot token.
    operator = {"Authorization": f"Bearer {API_TOKEN}"}
    listed = await (await page.request.get(f"{base}/media/failed-jobs", headers=operator)).json()
    (job,) = listed["failed_jobs"]
    assert job["bot_id"] == BOT and job["pool"] == "Corrupt"
    gone = f"{base}/media/failed-jobs/{job['media_processing_id']}"
    as_bot = {"Authorization": f"Bearer {other_token}"}
    assert (await page.request.delete(gone, headers=as_bot)).status == 403
    assert (await page.request.delete(gone, headers=operator)).status == 200
    assert (await page.request.delete(gone, headers=operator)).status == 404

    # --- a bot token sees only its bot ---------------------------------------------
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.locator("h1")).to_have_text("Sign in")
    await page.fill("#token", other_token)
    await page.keyboard.press("Enter")
    await expect(page.locator("h1")).to_have_text("Bots")
    await expect(page.locator("li[data-bot]")).to_have_count(1)
    await expect(page.locator(f'li[data-bot="{OTHER}"]')).to_have_count(1)
    denied = await page.goto(f"{base}/console/bots/{BOT}/conversation")
    assert denied is not None and denied.status == 403
    await expect(page.locator("#denied")).to_contain_text("only see its own bot")
    for path in (f"/console/bots/{BOT}/pairing", "/console/pools", "/console/failures"):
        answer = await page.goto(f"{base}{path}")
        assert answer is not None and answer.status == 403, path
    await pages.check("denied")
