"""The mixed-load figures: one 100 s voice note and ten 5 s voice notes through the real
pipeline (gateway, queue_svc, media_svc with the real Audio pool, one slot, and Whisper
base; bench/audio_pipeline.py), espeak-ng speech made here. Three runs, each on a fresh
pipeline:

- alone: the ten short notes in one burst while the pool is busy with a 5 s primer (a
  burst finding the pool idle has its first job claimed before the rest arrive); their
  placeholder → text times (ACCEPTED ack to the text on Subscribe), and each note's own
  processing time (the gap between its text and the one before: the slot never idles);
- together: the 100 s note, then the same ten, in one burst (claim order: the short
  notes go first);
- long first: the 100 s note alone, the ten short ones 1 s later, once the long one is
  being transcribed (chunks: the short ones go at the next chunk boundary).

`short_voice_p95_ratio` = p95 of the short notes' placeholder → text time together with
the long note ÷ the same p95 alone (target ≤ 2.0); `short_voice_own_ratio` = the issue's
literal ratio, p95 over the short notes of placeholder → text ÷ their own processing
time (ten notes for one slot wait for each other: it grows with the burst, long note or
not); `long_first_p95_ratio` = the long-first run's short p95 ÷ the alone p95. The long
note must still finish: its own times are printed. Controls (with `--mixed-only`):
`--fifo-control` repeats "together" in arrival order (`seconds_per_mib` 0),
`--chunk-control` repeats "long first" with whole notes (`chunk_seconds` 0).
"""

from __future__ import annotations

import asyncio
import itertools
import math
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.audio_pipeline import audio_pipeline, bot_socket, voice_frame
from tests.helpers import media_samples

BOT = "bench-mixed"
# What media_svc logs when a job gives its slot back between two chunks (worker.py).
_YIELD_LOG = "gave its slot to a cheaper job"
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


@dataclass
class Burst:
    """Placeholder → text seconds of one run: the primer's, and each note's in the order
    given; and each note's own processing time (below)."""

    primer_s: float
    notes_s: list[float]
    own_s: list[float]
    # How often a long note gave its slot to a cheaper one between two chunks.
    yields: int


async def _burst(
    notes: Sequence[Note],
    primer: Note,
    pause_s: float,
    arrival_order: bool = False,
    chunk_seconds: float | None = None,
) -> Burst:
    """Accepts `primer`, then after `pause_s` (its job claimed meanwhile) `notes` in one
    burst, on a fresh pipeline.

    A note's own processing time is the gap between its text and the text delivered just
    before it (the primer's included): the Audio pool has one slot and the burst keeps it
    busy, so that gap is the note's claim, transcription and delivery, without waiting."""
    from tests.helpers.processes import Subscriber  # noqa: PLC0415

    work = Path(tempfile.mkdtemp(prefix="bench-mixed-"))
    async with audio_pipeline(work, arrival_order, chunk_seconds) as pipeline:
        subscriber = Subscriber(pipeline.queue, BOT)
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
        for n, note in enumerate([primer, *notes]):
            media_id = str(uuid.uuid4())
            data = await asyncio.to_thread(note.path.read_bytes)
            await asyncio.to_thread((pipeline.staging / media_id).write_bytes, data)
            frames.append(voice_frame(BOT, CHAT, f"MIXED-{n}", media_id, len(data), n))
        accepted: dict[str, float] = {}
        async with bot_socket(pipeline.gateway, BOT) as socket:
            for n, frame in enumerate(frames):
                if n == 1:
                    await asyncio.sleep(pause_s)
                accepted[f"MIXED-{n}"] = await socket.send(frame)
        await subscriber.wait_for(len(frames), within=900)
        stamper.cancel()
        await subscriber.close()
    media_log = await asyncio.to_thread((work / "media.log").read_text, errors="replace")
    ids = [f"MIXED-{n}" for n in range(len(frames))]
    by_arrival = sorted(ids, key=arrived.__getitem__)
    before = {later: arrived[earlier] for earlier, later in itertools.pairwise(by_arrival)}
    return Burst(
        primer_s=arrived[ids[0]] - accepted[ids[0]],
        notes_s=[arrived[i] - accepted[i] for i in ids[1:]],
        own_s=[arrived[i] - max(before.get(i, accepted[i]), accepted[i]) for i in ids[1:]],
        yields=media_log.count(_YIELD_LOG),
    )


def _own_ratio(notes_s: Sequence[float], own: Sequence[float]) -> float:
    """The issue's literal figure: p95 over the short notes of placeholder → text ÷ the
    note's own processing time."""
    return p95([seconds / alone for seconds, alone in zip(notes_s, own, strict=True)])


def mixed_load(
    directory: Path, fifo_control: bool = False, chunk_control: bool = False
) -> dict[str, float]:
    long, shorts = make_notes(directory)
    print(
        f"  notes: long {long.seconds:.1f} s ({long.path.stat().st_size} B), "
        f"{len(shorts)} short {min(s.seconds for s in shorts):.1f}-"
        f"{max(s.seconds for s in shorts):.1f} s"
    )
    # The pool busy with a 5 s note when the burst lands: a burst finding it idle would
    # have its first job claimed before the rest arrive.
    alone = asyncio.run(_burst(shorts, shorts[-1], 0.5))
    together = asyncio.run(_burst([long, *shorts], shorts[-1], 0.5))
    # The long note already running when the short ones arrive: only chunks help here.
    long_first = asyncio.run(_burst(shorts, long, 1.0))
    own = alone.own_s
    figures = {
        "alone_p95_s": p95(alone.notes_s),
        "own_p95_s": p95(own),
        "mixed_p95_s": p95(together.notes_s[1:]),
        "long_s": together.notes_s[0],
        "long_first_p95_s": p95(long_first.notes_s),
        "long_first_long_s": long_first.primer_s,
    }
    figures["ratio"] = figures["mixed_p95_s"] / figures["alone_p95_s"]
    figures["own_ratio"] = _own_ratio(together.notes_s[1:], own)
    figures["long_first_ratio"] = figures["long_first_p95_s"] / figures["alone_p95_s"]
    figures["long_first_own_ratio"] = _own_ratio(long_first.notes_s, own)
    print(
        f"  short notes alone: placeholder -> text p95 {figures['alone_p95_s']:.2f} s;"
        f" own processing {min(own):.2f}-{max(own):.2f} s (p95 {figures['own_p95_s']:.2f} s)"
    )
    print(
        f"  together with the long note: short p95 {figures['mixed_p95_s']:.2f} s"
        f" (ratio {figures['ratio']:.2f}, to own time {figures['own_ratio']:.2f});"
        f" long note {figures['long_s']:.2f} s"
    )
    print(
        f"  long note first, short ones 1 s later: short p95 {figures['long_first_p95_s']:.2f} s"
        f" (ratio {figures['long_first_ratio']:.2f}, to own time"
        f" {figures['long_first_own_ratio']:.2f}), first short text"
        f" {min(long_first.notes_s):.2f} s;"
        f" long note {figures['long_first_long_s']:.2f} s, {long_first.yields} yields"
    )
    if fifo_control:
        fifo = asyncio.run(_burst([long, *shorts], shorts[-1], 0.5, arrival_order=True))
        figures["fifo_ratio"] = p95(fifo.notes_s[1:]) / figures["alone_p95_s"]
        print(
            f"  control, arrival order: short p95 {p95(fifo.notes_s[1:]):.2f} s, long note"
            f" {fifo.notes_s[0]:.2f} s, ratio {figures['fifo_ratio']:.2f}"
        )
    if chunk_control:
        whole = asyncio.run(_burst(shorts, long, 1.0, chunk_seconds=0))
        figures["whole_long_first_ratio"] = p95(whole.notes_s) / figures["alone_p95_s"]
        print(
            f"  control, long note first without chunks: short p95 {p95(whole.notes_s):.2f} s"
            f" (ratio {figures['whole_long_first_ratio']:.2f}), first short text"
            f" {min(whole.notes_s):.2f} s; long note {whole.primer_s:.2f} s, {whole.yields} yields"
        )
    return figures
