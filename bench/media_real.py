"""The media path with the real processors (rapidocr, faster-whisper, pypdf), per kind:
media frames over the gateway WebSocket → queue_svc → media_svc → the transcript or text
on Subscribe. Inputs are made here (a 1024x768 image of text, the same as a 512x512 WebP
sticker, an espeak-ng voice note of about 12 s, a 6 s MP4 with that speech and text
frames, a 5-page PDF). Pools are warmed at start (MEDIA_WARM_POOLS), so the figures are
per job, not engine loading. Per kind, `--jobs` frames one after another: pickup latency
(job created → claimed, media_svc's claim trace) and end to end (frame accepted →
message on Subscribe), the first job of each kind apart. Then 1 vs 2 media_svc replicas
on the CPU-bound Image pool (OCR): `--images` images sent at once, jobs/s until the last
is delivered (the second replica joins once its engines are loaded).
Last line: `RESULT e2e_s_image=<x> ... e2e_s_video=<x> image_jobs_per_s_1=<x>
image_jobs_per_s_2=<x>`.

    .venv/bin/python bench/media_real.py [--jobs 3] [--images 8]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

# Replace the script's own directory on the path: bench/queue.py would shadow the stdlib.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

from PIL import Image  # noqa: E402

from bench.harness import (  # noqa: E402
    Outbox,
    Stack,
    TimedConsumer,
    cpu_seconds,
    load_average,
    media_frame,
    percentile,
    start_bots,
)
from bench.processors import IMAGE_LINES, SPEECH, make_pdf, make_text_image  # noqa: E402
from tests.helpers import media_samples  # noqa: E402
from tests.helpers.processes import free_port  # noqa: E402

BOT = "bench-media-real"
CHAT = "4915100000042@s.whatsapp.net"


def make_inputs(directory: Path) -> dict[str, tuple[str, str, bytes]]:
    """kind → (wire media kind, MIME type, file bytes)."""
    image = make_text_image(directory / "timetable.jpg")
    sticker = io.BytesIO()
    Image.open(image).resize((512, 512)).save(sticker, "WEBP")
    pdf = make_pdf(directory / "report.pdf", 5)
    inputs = {
        "image": ("MEDIA_KIND_IMAGE", "image/jpeg", image.read_bytes()),
        "sticker": ("MEDIA_KIND_STICKER", "image/webp", sticker.getvalue()),
        "document": ("MEDIA_KIND_DOCUMENT", "application/pdf", pdf.read_bytes()),
    }
    if media_samples.espeak_available():
        note = media_samples.voice_note(SPEECH["en"], "en", directory / "note.ogg")
        inputs["audio"] = ("MEDIA_KIND_AUDIO", "audio/ogg", note.read_bytes())
        frames = [media_samples.text_frame(IMAGE_LINES[i : i + 3]) for i in (0, 3)]
        video = media_samples.write_video(
            directory / "clip.mp4", frames, 3.0, audio=media_samples.read_mono(note)[: 6 * 48000]
        )
        inputs["video"] = ("MEDIA_KIND_VIDEO", "video/mp4", video.read_bytes())
    return inputs


async def one_by_one(
    outbox: Outbox,
    consumer: TimedConsumer,
    stack: Stack,
    kind: str,
    spec: tuple[str, str, bytes],
    jobs: int,
) -> list[tuple[str, float]]:
    """(media processing id, seconds from accepted to delivered) per job."""
    results = []
    for n in range(jobs + 1):
        provider_id = f"real-{kind}-{n}"
        text = media_frame(
            f"f-{provider_id}", BOT, CHAT, provider_id, spec[0], spec[1], stack.staging, spec[2]
        )
        job = json.loads(text)["mediaMessage"]["mediaProcessingId"]
        await outbox.send(f"f-{provider_id}", text)
        await outbox.drain(60)
        if not await consumer.wait_for({provider_id}, 300):
            raise RuntimeError(f"{kind}: job {n} not delivered within 300 s")
        results.append(
            (job, consumer.arrived[provider_id][0] - outbox.accepted_at[f"f-{provider_id}"])
        )
    return results


async def settled(pid: int, within: float = 120) -> None:
    """Waits until a starting replica has loaded its engines (its CPU use stops)."""
    deadline = time.perf_counter() + within
    last = cpu_seconds(pid)
    while time.perf_counter() < deadline:
        await asyncio.sleep(1)
        now = cpu_seconds(pid)
        if now - last < 0.05:
            return
        last = now


async def burst(
    outbox: Outbox, consumer: TimedConsumer, stack: Stack, image: bytes, count: int, tag: str
) -> float:
    """Jobs/s of `count` images sent at once."""
    ids = set()
    started = time.perf_counter()
    for n in range(count):
        provider_id = f"{tag}-{n}"
        ids.add(provider_id)
        text = media_frame(
            f"f-{provider_id}", BOT, CHAT, provider_id, "MEDIA_KIND_IMAGE",
            "image/jpeg", stack.staging, image,
        )  # fmt: skip
        await outbox.send(f"f-{provider_id}", text)
    if not await consumer.wait_for(ids, 600):
        raise RuntimeError(f"{tag}: images not delivered")
    return count / (max(consumer.arrived[i][0] for i in ids) - started)


async def run(jobs: int, images: int) -> None:
    print(f"load average before: {load_average()}")
    root = Path(tempfile.mkdtemp(prefix="bench-media-real-"))
    inputs = make_inputs(root)
    if "audio" not in inputs:
        print("espeak-ng missing: audio and video skipped")
    stack = Stack(root, free_port())
    trace = root / "trace.jsonl"
    stack.extra_env["media_svc"] = {
        "MEDIA_WARM_POOLS": "true",
        "MEDIA_SVC_TRACE_PATH": str(trace),
        "MEDIA_LEASE_SECONDS": "120",
    }
    await stack.start("queue_svc")
    began = time.perf_counter()
    await stack.start("media_svc")
    print(f"media_svc up with every engine loaded after {time.perf_counter() - began:.1f} s")
    await stack.start("gateway")
    await start_bots(stack.queue_address, [BOT])
    consumer = TimedConsumer(stack.queue_address, [BOT])
    consumer.start()
    outbox = Outbox(stack.ws_url)
    await outbox.start()
    figures: dict[str, float] = {}
    try:
        for kind, spec in inputs.items():
            results = await one_by_one(outbox, consumer, stack, kind, spec, jobs)
            claims = [json.loads(line) for line in trace.read_text().splitlines()]
            mine = {job for job, _ in results}
            pickups = [
                c["claimed_ms"] - c["created_ms"]
                for c in claims
                if c["id"] in mine and c["token"] == 1
            ]
            first, e2e = results[0][1], [s for _, s in results[1:]]
            figures[f"e2e_s_{kind}"] = statistics.median(e2e)
            sample = next(m.message.content for m in consumer.messages
                          if m.message.provider_message_id == f"real-{kind}-0")  # fmt: skip
            print(
                f"{kind}: {len(spec[2])} bytes, {jobs} jobs one after another: end to end s"
                f" median={statistics.median(e2e):.2f} max={max(e2e):.2f} (first job"
                f" {first:.2f}); pickup ms"
                f" p50={percentile(pickups, 0.5):.0f} max={max(pickups, default=float('nan')):.0f};"
                f" text: {sample[:70]!r}"
            )
        image = inputs["image"][2]
        figures["image_jobs_per_s_1"] = await burst(outbox, consumer, stack, image, images, "one")
        second = await stack.start_named("media_svc", "media_svc_2")
        await settled(second.process.pid)
        figures["image_jobs_per_s_2"] = await burst(outbox, consumer, stack, image, images, "two")
        print(
            f"Image pool (OCR, CPU-bound), {images} images sent at once: 1 media_svc replica"
            f" {figures['image_jobs_per_s_1']:.2f} jobs/s, 2 replicas"
            f" {figures['image_jobs_per_s_2']:.2f} jobs/s"
        )
    finally:
        await outbox.close()
        await consumer.close()
        await stack.stop_all()
    print(f"load average after: {load_average()}")
    print("RESULT " + " ".join(f"{k}={v:.2f}" for k, v in figures.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--jobs", type=int, default=3, help="per kind, one after another")
    parser.add_argument("--images", type=int, default=8, help="images per replica burst")
    args = parser.parse_args()
    asyncio.run(run(args.jobs, args.images))


if __name__ == "__main__":
    main()
