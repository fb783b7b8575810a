"""Media engines through the project's processors, and as bare library calls.

Every input is made here: espeak-ng speech of at least 10 s in English, Spanish and
German encoded as ogg/opus voice notes, a 1024x768 image of text drawn by Pillow, and a
PDF of text pages written byte by byte. Each engine runs through its processor
(`parse_options` → `load_engine` → `process`, as a worker process does) and, in the
same run and on the same input, as the bare library call (faster-whisper on the file,
rapidocr on the image, pypdf on the PDF); the two alternate so that load from other
processes on the machine hits both alike. Printed:

- audio real-time factor (processing seconds / audio seconds) with language detection,
- word error rate per language,
- OCR seconds per 1024x768 image, PDF pages per second,
- peak resident memory of a worker process with each engine loaded and one job done
  (measured in a fresh subprocess),
- processor / bare-call time ratio per engine.

The end-to-end figure runs the real pipeline (gateway, queue_svc, media_svc with the
Audio pool warmed) and times an accepted voice-note frame to its transcript on
Subscribe. The mixed-load figures (bench/mixed_load.py) send one 100 s voice note and
ten 5 s ones through the same pipeline: together, and the long one first.

Last line: `RESULT audio_rtf=<x> audio_wer_en=<x> voice_note_e2e_s=<x>
ocr_s_per_image=<x> pdf_pages_per_s=<n> overhead_ratio_max=<x> audio_worker_rss_mb=<n>
short_voice_p95_ratio=<x> short_voice_own_ratio=<x> long_first_p95_ratio=<x>`.

    .venv/bin/python bench/processors.py [--runs 2]
        [--mixed-only [--fifo-control] [--chunk-control]]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import re
import subprocess
import sys
import tempfile
import time
import unicodedata
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# Replace the script's own directory on the path: bench/queue.py would shadow the stdlib.
sys.path[0] = str(ROOT)

from bench.audio_pipeline import audio_pipeline, bot_socket, voice_frame  # noqa: E402
from bench.mixed_load import mixed_load  # noqa: E402
from services.media_svc.models import assemble_whisper_base, models_dir  # noqa: E402
from services.media_svc.processors.contract import ProcessorInput  # noqa: E402
from tests.helpers import media_samples  # noqa: E402

# Voice-mail length texts: about 15 s each at espeak-ng's 150 words per minute.
SPEECH = {
    "en": (
        "Hi, this is Maria from the front desk. Your personal training session has moved "
        "to Thursday afternoon. Please bring your water bottle and a towel, and let us "
        "know if the new time does not work for you."
    ),
    "es": (
        "Hola, soy María de la recepción. Tu sesión de entrenamiento personal se ha "
        "cambiado al jueves por la tarde. Por favor trae tu botella de agua y una toalla, "
        "y avísanos si el nuevo horario no te viene bien."
    ),
    "de": (
        "Hallo, hier ist Maria von der Rezeption. Dein persönliches Training wurde auf "
        "Donnerstag Nachmittag verschoben. Bitte bring deine Wasserflasche und ein "
        "Handtuch mit, und sag uns Bescheid, wenn die neue Zeit nicht passt."
    ),
}
IMAGE_LINES = [
    "GYMPULSE WEEKLY TIMETABLE",
    "Monday 07:00 Spin class with Anna",
    "Tuesday 18:30 Yoga for beginners",
    "Wednesday 12:15 Lunchtime circuit",
    "Thursday 19:00 Boxing fundamentals",
    "Friday 17:45 Stretch and mobility",
    "Members bring a towel and a bottle",
]
PDF_PAGES = 200
PDF_MIN_RUNS = 5


# ---------------------------------------------------------------- measurements


def word_error_rate(reference: str, hypothesis: str) -> float:
    """(substitutions + deletions + insertions) / reference words, on words compared in
    lower case without punctuation or accents' case differences."""
    ref, hyp = _words(reference), _words(hypothesis)
    previous = list(range(len(hyp) + 1))
    for i, ref_word in enumerate(ref, start=1):
        current = [i] + [0] * len(hyp)
        for j, hyp_word in enumerate(hyp, start=1):
            current[j] = min(
                previous[j] + 1,
                current[j - 1] + 1,
                previous[j - 1] + (ref_word != hyp_word),
            )
        previous = current
    return previous[-1] / max(len(ref), 1)


def _words(text: str) -> list[str]:
    normal = unicodedata.normalize("NFC", text).casefold()
    return re.findall(r"[\w']+", normal)


def voice_note_end_to_end_seconds(note: Path) -> float | None:
    """Seconds from an accepted voice-note frame to its transcript on Subscribe.

    The real pipeline on loopback: queue_svc, media_svc with only the Audio pool (its
    engine warmed first, as a running deployment's is) and the gateway, on a fresh
    SQLite store; the frame goes over the gateway's WebSocket like Node's, the clock
    starts at its ACCEPTED ack and stops when the transcript arrives on Subscribe.
    """
    return asyncio.run(_voice_note_e2e(note))


async def _voice_note_e2e(note: Path) -> float:
    from tests.helpers.processes import Subscriber  # noqa: PLC0415

    bot, chat = "bench-bot", "4915100000001@s.whatsapp.net"
    async with audio_pipeline(Path(tempfile.mkdtemp(prefix="bench-e2e-"))) as pipeline:
        subscriber = Subscriber(pipeline.queue, bot)
        await subscriber.start()
        media_id = "5f0c7a3e-1d2b-4c3d-8e4f-1a2b3c4d5e6f"
        note_bytes = await asyncio.to_thread(note.read_bytes)
        await asyncio.to_thread((pipeline.staging / media_id).write_bytes, note_bytes)
        frame = voice_frame(bot, chat, "BENCH-VOICE-1", media_id, len(note_bytes), 1)
        async with bot_socket(pipeline.gateway, bot) as socket:
            accepted = await socket.send(frame)
        await subscriber.wait_for(1, within=300)
        seconds = time.perf_counter() - accepted
        print(f"  transcript: {subscriber.messages[0].message.content[:100]}")
        await subscriber.close()
        return seconds


@dataclass
class Timing:
    """Seconds per run. The fastest run is the figure: on a machine shared with other
    work, slower runs measure the neighbours, not the code."""

    processor: list[float]
    bare: list[float]

    @property
    def processor_s(self) -> float:
        return min(self.processor)

    @property
    def bare_s(self) -> float:
        return min(self.bare)

    @property
    def ratio(self) -> float:
        return self.processor_s / self.bare_s


def alternate(
    processor: Callable[[], Any], bare: Callable[[], Any], runs: int
) -> tuple[Timing, Any, Any]:
    """Times both calls `runs` times each, alternating which goes first; returns the
    last results."""
    timing = Timing([], [])
    results: dict[str, Any] = {}
    calls = {"processor": processor, "bare": bare}
    for run in range(runs):
        for name in ("processor", "bare") if run % 2 == 0 else ("bare", "processor"):
            started = time.perf_counter()
            results[name] = calls[name]()
            getattr(timing, name).append(time.perf_counter() - started)
    return timing, results["processor"], results["bare"]


def item(kind: str, mime: str, path: Path) -> ProcessorInput:
    return ProcessorInput(media_kind=kind, mime=mime, path=path, size=path.stat().st_size)


def optional_processor(module: str, name: str) -> Any:
    """A processor class from the image/document work, or None where it is absent."""
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return None


# ---------------------------------------------------------------- inputs


def make_voice_notes(directory: Path) -> dict[str, tuple[Path, float]]:
    notes: dict[str, tuple[Path, float]] = {}
    for language, text in SPEECH.items():
        path = media_samples.voice_note(text, language, directory / f"{language}.ogg")
        seconds = len(media_samples.read_mono(path)) / media_samples.OPUS_RATE
        notes[language] = (path, seconds)
    return notes


def make_text_image(path: Path) -> Path:
    from PIL import Image, ImageDraw, ImageFont  # noqa: PLC0415 - bench input only

    image = Image.new("RGB", (1024, 768), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=44)
    for index, line in enumerate(IMAGE_LINES):
        draw.text((40, 40 + 100 * index), line, fill="black", font=font)
    image.save(path, "JPEG", quality=90)
    return path


def make_pdf(path: Path, pages: int) -> Path:
    """A PDF of `pages` pages of Helvetica text, written directly (no PDF library)."""
    objects: list[bytes] = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"",  # the page tree, filled in once the page objects are numbered
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    kids: list[int] = []
    for number in range(1, pages + 1):
        lines = [f"Page {number}: weekly report of the front desk."] + [
            f"Line {row}: members checked in, classes booked, towels handed out."
            for row in range(1, 21)
        ]
        text = "".join(f"({line}) Tj T* " for line in lines)
        stream = zlib.compress(f"BT /F1 11 Tf 14 TL 50 780 Td {text}ET".encode())
        objects.append(
            b"<< /Length %d /Filter /FlateDecode >>\nstream\n%s\nendstream" % (len(stream), stream)
        )
        content = len(objects)
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] "
            b"/Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>" % content
        )
        kids.append(len(objects))
    objects[1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (
        b" ".join(b"%d 0 R" % kid for kid in kids),
        pages,
    )
    out = bytearray(b"%PDF-1.7\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    path.write_bytes(bytes(out))
    return path


# ---------------------------------------------------------------- engines


def bench_audio(notes: dict[str, tuple[Path, float]], runs: int) -> dict[str, Any]:
    from faster_whisper import WhisperModel  # noqa: PLC0415 - the bare call

    from services.media_svc.processors.audio import AudioProcessor  # noqa: PLC0415

    options = AudioProcessor.parse_options({})
    engine = AudioProcessor.load_engine(options)
    bare_model = WhisperModel(
        str(options.model_dir), device="cpu", compute_type="int8", local_files_only=True
    )

    def bare(path: Path) -> tuple[str, str]:
        segments, info = bare_model.transcribe(str(path), beam_size=5, vad_filter=True)
        return " ".join(segment.text.strip() for segment in segments), info.language

    # Warm both (the VAD session and allocator pools start on first use).
    warm = item("MEDIA_KIND_VOICE_NOTE", "audio/ogg", notes["en"][0])
    AudioProcessor.process(engine, options, warm)
    bare(notes["en"][0])

    total_audio = 0.0
    processor_times: list[float] = []
    bare_times: list[float] = []
    wer: dict[str, float] = {}
    print(f"{'clip':6} {'audio s':>7} {'proc s':>7} {'bare s':>7} {'ratio':>6} {'WER':>6}  text")
    for language, (path, seconds) in notes.items():
        job = item("MEDIA_KIND_VOICE_NOTE", "audio/ogg", path)
        timing, outcome, (bare_text, bare_language) = alternate(
            partial(AudioProcessor.process, engine, options, job),
            partial(bare, path),
            runs,
        )
        text = getattr(outcome, "text", "")
        transcript = text.partition("] ")[2]
        wer[language] = word_error_rate(SPEECH[language], transcript)
        total_audio += seconds
        processor_times.append(timing.processor_s)
        bare_times.append(timing.bare_s)
        print(
            f"{language:6} {seconds:7.1f} {processor_times[-1]:7.2f} {bare_times[-1]:7.2f} "
            f"{timing.ratio:6.2f} {wer[language]:6.3f}  {text[:90]}"
        )
        if bare_language != language:
            print(f"       bare call detected {bare_language!r}: {bare_text[:80]}")
    return {
        "rtf": sum(processor_times) / total_audio,
        "bare_rtf": sum(bare_times) / total_audio,
        "ratio": sum(processor_times) / sum(bare_times),
        "wer": wer,
    }


def bench_ocr(image: Path, runs: int) -> dict[str, Any] | None:
    processor = optional_processor("services.media_svc.processors.image", "ImageProcessor")
    if processor is None:
        return None
    from PIL import Image  # noqa: PLC0415 - bench only
    from rapidocr import RapidOCR  # noqa: PLC0415 - the bare call

    from services.common.routing import default_definitions  # noqa: PLC0415
    from services.media_svc.engines import ocr  # noqa: PLC0415

    # The options the default Image pool ships with (its onnxruntime threads), for both.
    options = processor.parse_options(default_definitions().pool("Image").options)
    engine = processor.load_engine(options)
    threads = options.ocr.threads if options.ocr.threads > 0 else -1
    bare_ocr = RapidOCR(
        params={
            "Global.log_level": "warning",
            "Det.model_path": str(ocr.DETECTION_MODEL),
            "Rec.model_path": str(ocr.RECOGNITION_MODEL),
            "Cls.model_path": str(ocr.ORIENTATION_MODEL),
            "EngineConfig.onnxruntime.intra_op_num_threads": threads,
            "EngineConfig.onnxruntime.inter_op_num_threads": threads,
        }
    )
    job = item("MEDIA_KIND_IMAGE", "image/jpeg", image)

    def bare() -> Any:
        with Image.open(image) as opened:
            return bare_ocr(opened.convert("RGB"))

    processor.process(engine, options, job)
    bare()
    timing, outcome, _ = alternate(lambda: processor.process(engine, options, job), bare, runs)
    print(
        f"ocr    1024x768 ({threads} threads) proc {timing.processor_s:.2f} s, bare "
        f"{timing.bare_s:.2f} s, ratio {timing.ratio:.2f}: "
        f"{getattr(outcome, 'text', outcome)!s:.90}"
    )
    return {"seconds": timing.processor_s, "ratio": timing.ratio}


def bench_pdf(pdf: Path, pages: int, runs: int) -> dict[str, Any] | None:
    processor = optional_processor("services.media_svc.processors.document", "DocumentProcessor")
    if processor is None:
        return None
    # Installed with the document processor; absent on a branch without it.
    pypdf = importlib.import_module("pypdf")

    options = processor.parse_options({"max_output_chars": 10_000_000})
    engine = processor.load_engine(options)
    job = item("MEDIA_KIND_DOCUMENT", "application/pdf", pdf)

    def bare() -> int:
        reader = pypdf.PdfReader(str(pdf))
        return sum(len(page.extract_text()) for page in reader.pages)

    # Half a second a call: one sample each (`--runs 1`) was load noise, once 1.29x; a
    # profile shows the processor's own code under 1 % of the run (all else is pypdf's
    # extract_text, which the bare call runs too), so the fastest of five is the figure.
    timing, outcome, _ = alternate(
        lambda: processor.process(engine, options, job), bare, max(runs, PDF_MIN_RUNS)
    )
    seconds = timing.processor_s
    print(
        f"pdf    {pages} pages proc {seconds:.2f} s, bare {timing.bare_s:.2f}"
        f" s, ratio {timing.ratio:.2f}: {getattr(outcome, 'text', outcome)!s:.60}"
    )
    return {"pages_per_s": pages / seconds, "ratio": timing.ratio}


# ---------------------------------------------------------------- worker memory

_WORKERS: dict[str, tuple[str, str, str, str, dict[str, Any]]] = {
    # pool: (module, class, media kind, mime, options)
    "audio": (
        "services.media_svc.processors.audio",
        "AudioProcessor",
        "MEDIA_KIND_VOICE_NOTE",
        "audio/ogg",
        {},
    ),
    "video": (
        "services.media_svc.processors.video",
        "VideoProcessor",
        "MEDIA_KIND_VIDEO",
        "video/mp4",
        {},
    ),
    "image": (
        "services.media_svc.processors.image",
        "ImageProcessor",
        "MEDIA_KIND_IMAGE",
        "image/jpeg",
        {},
    ),
    "document": (
        "services.media_svc.processors.document",
        "DocumentProcessor",
        "MEDIA_KIND_DOCUMENT",
        "application/pdf",
        {},
    ),
}


def worker_memory_child(pool: str, sample: Path) -> None:
    """In a fresh process: load the pool's engine, run one job, print peak/now RSS."""
    module, name, kind, mime, raw = _WORKERS[pool]
    processor = optional_processor(module, name)
    if processor is None:
        print(json.dumps(None))
        return
    options = processor.parse_options(raw)
    engine = processor.load_engine(options)
    processor.process(engine, options, item(kind, mime, sample))
    status = Path("/proc/self/status").read_text()
    kib = {key: int(value.split()[0]) for key, value in re.findall(r"(Vm\w+):\s+(.+)", status)}
    print(json.dumps({"peak_mb": kib["VmHWM"] / 1024, "rss_mb": kib["VmRSS"] / 1024}))


def worker_memory(pool: str, sample: Path) -> dict[str, float] | None:
    done = subprocess.run(
        [sys.executable, __file__, "--worker-memory", pool, str(sample)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=ROOT,
    )
    if done.returncode != 0:
        print(f"{pool} worker failed: {done.stderr.strip()[-400:]}")
        return None
    result: dict[str, float] | None = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# ---------------------------------------------------------------- main


def _figure(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def run(runs: int) -> None:
    assemble_whisper_base(models_dir())
    work = Path(tempfile.mkdtemp(prefix="bench-processors-"))
    notes = make_voice_notes(work)
    image = make_text_image(work / "timetable.jpg")
    pdf = make_pdf(work / "report.pdf", PDF_PAGES)

    print("== audio (AudioProcessor vs faster-whisper on the file; detection on)")
    audio = bench_audio(notes, runs)
    print(
        f"audio RTF {audio['rtf']:.3f} (bare {audio['bare_rtf']:.3f}), "
        f"processor/bare {audio['ratio']:.3f}; WER "
        + ", ".join(f"{lang} {value:.3f}" for lang, value in audio["wer"].items())
    )
    print("== OCR (ImageProcessor vs rapidocr on the image)")
    ocr = bench_ocr(image, runs)
    if ocr is None:
        print("ocr: n/a (ImageProcessor not available on this branch)")
    print(f"== PDF ({PDF_PAGES} text pages: DocumentProcessor vs pypdf)")
    pdf_figures = bench_pdf(pdf, PDF_PAGES, runs)
    if pdf_figures is None:
        print("pdf: n/a (DocumentProcessor not available on this branch)")
    print("== e2e: accepted 15 s voice-note frame -> transcript on Subscribe")
    e2e = voice_note_end_to_end_seconds(notes["en"][0])
    print(f"voice_note_e2e_s: {_figure(e2e, '.2f')} ({notes['en'][1]:.1f} s of speech)")
    print("== mixed load: one 100 s and ten 5 s voice notes, together and long first")
    mixed = mixed_load(work)
    print(_mixed_result(mixed).replace("=", ": ").replace(" ", "\n").replace(":\n", ": "))
    print("== worker memory (fresh process, engine loaded, one job done)")
    video = media_samples.write_video(
        work / "clip.mp4",
        [media_samples.text_frame(IMAGE_LINES[:3], (1024, 768))],
        seconds_per_frame=notes["en"][1],
        audio=media_samples.read_mono(notes["en"][0]),
    )
    samples = {"audio": notes["en"][0], "video": video, "image": image, "document": pdf}
    memory: dict[str, dict[str, float] | None] = {}
    for pool, sample in samples.items():
        memory[pool] = worker_memory(pool, sample)
        figures = memory[pool]
        print(
            f"{pool:9} "
            + (
                "n/a"
                if figures is None
                else f"peak {figures['peak_mb']:.0f} MB, now {figures['rss_mb']:.0f} MB"
            )
        )

    ratios = [audio["ratio"]] + [f["ratio"] for f in (ocr, pdf_figures) if f is not None]
    audio_memory = memory["audio"]
    print(
        f"RESULT audio_rtf={audio['rtf']:.3f} audio_wer_en={audio['wer']['en']:.3f} "
        f"voice_note_e2e_s={_figure(e2e, '.2f')} "
        f"ocr_s_per_image={_figure(ocr['seconds'] if ocr else None, '.2f')} "
        f"pdf_pages_per_s={_figure(pdf_figures['pages_per_s'] if pdf_figures else None, '.0f')} "
        f"overhead_ratio_max={max(ratios):.3f} "
        f"audio_worker_rss_mb={_figure(audio_memory['peak_mb'] if audio_memory else None, '.0f')} "
        f"{_mixed_result(mixed)}"
    )


def _mixed_result(mixed: dict[str, float]) -> str:
    return (
        f"short_voice_p95_ratio={mixed['ratio']:.2f} "
        f"short_voice_own_ratio={mixed['own_ratio']:.2f} "
        f"long_first_p95_ratio={mixed['long_first_ratio']:.2f}"
    )


def run_mixed_only(fifo_control: bool, chunk_control: bool) -> None:
    assemble_whisper_base(models_dir())
    work = Path(tempfile.mkdtemp(prefix="bench-processors-"))
    mixed = mixed_load(work, fifo_control, chunk_control)
    print(f"RESULT {_mixed_result(mixed)}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=2, help="timed runs per input and call")
    parser.add_argument(
        "--worker-memory", nargs=2, metavar=("POOL", "SAMPLE"), help=argparse.SUPPRESS
    )
    parser.add_argument("--mixed-only", action="store_true", help="only the mixed-load figure")
    parser.add_argument(
        "--fifo-control", action="store_true", help="with --mixed-only: also in arrival order"
    )
    parser.add_argument(
        "--chunk-control",
        action="store_true",
        help="with --mixed-only: the long-first run also with whole notes (no chunks)",
    )
    args = parser.parse_args(argv)
    if args.mixed_only:
        run_mixed_only(args.fifo_control, args.chunk_control)
        return
    if args.worker_memory:
        worker_memory_child(args.worker_memory[0], Path(args.worker_memory[1]))
        return
    run(max(1, args.runs))


if __name__ == "__main__":
    main()
