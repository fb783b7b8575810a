"""`make up`'s pairing helper: prints a bot's WhatsApp pairing QR code in the terminal.

Polls the Node server for the sessions of the bots registered as active in the store;
whenever one waits for pairing (QR_REQUIRED) with a new code, prints it as a QR code to
scan with WhatsApp (Settings → Linked devices → Link a device), and says when the
session opens. Configuration: the same environment `make up` gives every process.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from pathlib import Path

import aiohttp
import segno

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from services.common.store import StoreConfig, open_store  # noqa: E402


async def watch(node_url: str, token: str, store_config: StoreConfig, every: float) -> None:
    shown: dict[str, str] = {}
    states: dict[str, str] = {}
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    store = await open_store(store_config)
    try:
        async with aiohttp.ClientSession(headers=headers) as http:
            while True:
                for bot in await store.active_bots():
                    try:
                        await _show(http, node_url, bot, shown, states)
                    except aiohttp.ClientError as exc:
                        print(f"pairing: Node server not reachable yet ({exc})", flush=True)
                await asyncio.sleep(every)
    finally:
        await store.close()


async def _show(
    http: aiohttp.ClientSession,
    node_url: str,
    bot: str,
    shown: dict[str, str],
    states: dict[str, str],
) -> None:
    async with http.get(f"{node_url}/sessions/{bot}") as response:
        if response.status != 200:
            return
        session = await response.json()
    state = str(session.get("state", ""))
    if states.get(bot) != state:
        states[bot] = state
        print(f"pairing: bot {bot}: WhatsApp session {state}", flush=True)
    if state != "QR_REQUIRED":
        return
    async with http.get(f"{node_url}/sessions/{bot}/qr") as response:
        if response.status != 200:
            return
        qr = str((await response.json()).get("qr", ""))
    if qr and shown.get(bot) != qr:
        shown[bot] = qr
        print(
            f"pairing: scan this with WhatsApp on the phone of bot {bot} "
            "(Settings → Linked devices → Link a device):",
            flush=True,
        )
        segno.make(qr, error="l").terminal(compact=True)
        sys.stdout.flush()


def main() -> None:
    node_url = (
        f"http://{os.environ.get('NODE_HOST', '127.0.0.1')}:{os.environ.get('NODE_PORT', '8091')}"
    )
    every = float(os.environ.get("PAIRING_POLL_SECONDS", "2"))
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C reaches every process of make up
        asyncio.run(
            watch(node_url, os.environ.get("NODE_API_TOKEN", ""), StoreConfig.from_env(), every)
        )


if __name__ == "__main__":
    main()
