"""The mixed-load figure: one 100 s voice note and ten 5 s voice notes accepted together
by the real pipeline (gateway, queue_svc, media_svc with the real Audio pool and Whisper
base), espeak-ng speech made here.

Two runs on one fresh pipeline each, the pool busy with a 5 s note when the burst lands
(a burst that finds the pool idle has its first job claimed before the rest arrive, and
no order can take back a claim):
- alone: the ten short notes, their placeholder → text times (ACCEPTED ack to the text on
  Subscribe); their p95 is what the short notes cost on their own, waiting for each
  other included;
- mixed: the 100 s note first, then the same ten short notes.

`short_voice_p95_ratio` = p95 of the short notes' placeholder → text time in the mixed
run ÷ the same p95 alone (target ≤ 2.0). The long note must still finish: its own
placeholder → text time is printed. `--fifo-control` (with `--mixed-only`) repeats the
mixed run with the Audio pool's `seconds_per_mib` at 0, i.e. arrival order, to show what
the claim order changes.
"""

from __future__ import annotations

import asyncio
import json
import math
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.helpers import media_samples

BOT = "bench-mixed"
CHAT = "4915100000002@s.whatsapp.net"
# About 5 s each at espeak-ng's 150 words per minute.
SHORT_TEXTS = [
    "Hello, is the shop open today, and until what time can I come by?",
    "Can you send me the price list for the new summer collection, please?",
    "I will be there at five o'clock with my brother and his two kids.",
    "Please call me back when you can, I have a question about my bill.",
    "Thank you, the order arrived today and everything was in perfect condition.",
    "Do you have this jacket in a larger size, maybe in dark blue?",
    "My booking number is four two seven, for two nights from Friday.",
    "Is there parking available near the office, or should I take the bus?",
    "I would like to cancel my appointment on Monday morning, I am sick.",
    "Where can I pick up the package that was sent to my old address?",
]
LONG_TEXT = (
    "Good morning, I am calling about the apartment on the third floor. We visited it "
    "last weekend with my wife and we liked the light in the living room very much, but "
    "we have a few questions before we decide. First, is the heating included in the "
    "monthly rent, or do we pay it separately to the energy company? Second, the kitchen "
    "looked quite old, and we would like to know whether the owner plans to renovate it, "
    "or whether we could do it ourselves and deduct part of the cost. Third, we have a "
    "small dog, very quiet, and we need to be sure that pets are allowed in the building. "
)


@dataclass
class Note:
    path: Path
    seconds: float


def make_notes(directory: Path) -> tuple[Note, list[Note]]:
    def note(text: str, name: str, words_per_minute: int = 150) -> Note:
        path = media_samples.voice_note(text, "en", directory / f"{name}.ogg", words_per_minute)
        return Note(path, len(media_samples.read_mono(path)) / media_samples.OPUS_RATE)

    long = note(" ".join([LONG_TEXT] * 3), "long", 165)  # about 100 s
    shorts = [note(text, f"short-{n}") for n, text in enumerate(SHORT_TEXTS)]
    return long, shorts


def p95(values: Sequence[float]) -> float:
    """Nearest-rank 95th percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


async def _arrival_order(db: Path) -> None:
    """The built-in definitions with the Audio pool's claim order off."""
    from services.common.routing import default_definitions  # noqa: PLC0415
    from services.common.store import StoreConfig, open_store  # noqa: PLC0415

    document = default_definitions().to_document()
    for pool in document["pools"]:
        if pool["name"] == "Audio":
            pool["seconds_per_mib"] = 0
    store = await open_store(StoreConfig(sqlite_path=db))
    try:
        await store.put_processor_definitions(document)
    finally:
        await store.close()


@asynccontextmanager
async def audio_pipeline(
    work: Path, arrival_order: bool = False
) -> AsyncIterator[tuple[str, str, Path]]:
    """queue_svc, media_svc (Audio pool only, engine warmed before it yields) and the
    gateway on a fresh SQLite store; yields (gateway address, queue address, staging)."""
    from tests.helpers.node_api import fake_node_api  # noqa: PLC0415
    from tests.helpers.processes import (  # noqa: PLC0415
        gateway_env,
        media_env,
        queue_env,
        start_service,
    )

    db, staging = work / "store.sqlite3", work / "staging"
    staging.mkdir()
    if arrival_order:
        await _arrival_order(db)
    node_runner, node_url = await fake_node_api([], "node-api")
    services = []
    try:
        queue = await start_service("services.queue_svc", queue_env(db), work / "queue.log")
        services.append(queue)
        media_log = work / "media.log"
        services.append(
            await start_service(
                "services.media_svc",
                media_env(
                    db,
                    staging,
                    queue.address,
                    MEDIA_POOLS="Audio",
                    MEDIA_WARM_POOLS="true",
                    MEDIA_LEASE_SECONDS="30",
                ),
                media_log,
            )
        )
        gateway = await start_service(
            "services.gateway",
            gateway_env(
                db,
                queue.address,
                node_url,
                node_ws_token="ws",
                api_token="api",
                node_api_token="node-api",
            ),
            work / "gateway.log",
        )
        services.append(gateway)
        for _ in range(600):
            if "engine loaded" in await asyncio.to_thread(media_log.read_text, errors="replace"):
                break
            await asyncio.sleep(0.1)
        yield gateway.address, queue.address, staging
    finally:
        for service in reversed(services):
            await service.stop()
        await node_runner.cleanup()


def _frame(n: int, media_id: str, size: int) -> dict[str, Any]:
    from tests.helpers.clock import iso_now  # noqa: PLC0415

    return {
        "frameId": f"mixed-{n}",
        "mediaMessage": {
            "header": {
                "botId": BOT,
                "correspondentId": CHAT,
                "sender": CHAT,
                "providerMessageId": f"MIXED-{n}",
                "originatingTime": iso_now(),
            },
            "mediaProcessingId": media_id,
            "mimeType": "audio/ogg; codecs=opus",
            "mediaKind": "MEDIA_KIND_VOICE_NOTE",
            "fileSize": str(size),
        },
    }


async def _burst(notes: Sequence[Note], arrival_order: bool = False) -> list[float]:
    """Accepts a 5 s primer, then `notes` in one burst; each note's placeholder → text
    seconds, in the order given."""
    import aiohttp  # noqa: PLC0415
    from chatbot.wire.v1 import frames_pb2 as w  # noqa: PLC0415

    from services.common.wire import parse_gateway_frame  # noqa: PLC0415
    from tests.helpers.processes import Subscriber  # noqa: PLC0415

    work = Path(tempfile.mkdtemp(prefix="bench-mixed-"))
    async with audio_pipeline(work, arrival_order) as (gateway, queue, staging):
        subscriber = Subscriber(queue, BOT)
        await subscriber.start()
        arrived: dict[str, float] = {}

        async def stamp() -> None:
            while True:
                for m in subscriber.messages:
                    arrived.setdefault(m.message.provider_message_id, time.perf_counter())
                subscriber.changed.clear()
                await subscriber.changed.wait()

        stamper = asyncio.create_task(stamp())
        frames = []
        for n, note in enumerate([notes[-1], *notes]):  # the primer: a short note
            media_id = str(uuid.uuid4())
            data = await asyncio.to_thread(note.path.read_bytes)
            await asyncio.to_thread((staging / media_id).write_bytes, data)
            frames.append(_frame(n, media_id, len(data)))
        accepted: dict[str, float] = {}
        api = f"http://{gateway}"
        async with aiohttp.ClientSession() as http:
            auth = {"Authorization": "Bearer api"}
            async with http.put(f"{api}/bots/{BOT}/config", json={}, headers=auth) as r:
                r.raise_for_status()
            async with http.post(f"{api}/bots/{BOT}/start", json={}, headers=auth) as r:
                r.raise_for_status()
            async with http.ws_connect(f"{api}/ws", headers={"Authorization": "Bearer ws"}) as ws:

                async def send(frame: dict[str, Any]) -> None:
                    await ws.send_str(json.dumps(frame))
                    ack = parse_gateway_frame((await ws.receive(timeout=30)).data).ack
                    if ack.status != w.ACK_STATUS_ACCEPTED:
                        raise RuntimeError(f"frame not accepted: {ack}")
                    header = frame["mediaMessage"]["header"]
                    accepted[header["providerMessageId"]] = time.perf_counter()

                await send(frames[0])
                # The burst once the primer is being transcribed (its job claimed).
                await asyncio.sleep(0.5)
                for frame in frames[1:]:
                    await send(frame)
        await subscriber.wait_for(len(frames), within=900)
        stamper.cancel()
        await subscriber.close()
    ids = [f"MIXED-{n}" for n in range(1, len(frames))]
    return [arrived[i] - accepted[i] for i in ids]


def mixed_load(directory: Path, fifo_control: bool = False) -> dict[str, float]:
    long, shorts = make_notes(directory)
    print(
        f"  notes: long {long.seconds:.1f} s ({long.path.stat().st_size} B), "
        f"{len(shorts)} short {min(s.seconds for s in shorts):.1f}-"
        f"{max(s.seconds for s in shorts):.1f} s"
    )
    alone = asyncio.run(_burst(shorts))
    mixed = asyncio.run(_burst([long, *shorts]))
    long_s, mixed_shorts = mixed[0], mixed[1:]
    figures = {
        "alone_p95_s": p95(alone),
        "mixed_p95_s": p95(mixed_shorts),
        "long_s": long_s,
    }
    figures["ratio"] = figures["mixed_p95_s"] / figures["alone_p95_s"]
    if fifo_control:
        fifo = asyncio.run(_burst([long, *shorts], arrival_order=True))
        figures["fifo_ratio"] = p95(fifo[1:]) / figures["alone_p95_s"]
        print(
            f"  arrival order (control): short p95 {p95(fifo[1:]):.2f} s, long note"
            f" {fifo[0]:.2f} s, ratio {figures['fifo_ratio']:.2f}"
        )
    print(
        "  short notes placeholder -> text p95: alone "
        f"{figures['alone_p95_s']:.2f} s, with the long note {figures['mixed_p95_s']:.2f} s; "
        f"long note {long_s:.2f} s"
    )
    return figures
