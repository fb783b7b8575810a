"""OCR and PDF throughput through the project's processors and as bare library calls on
the same inputs, in the same run (alternating, so machine load hits both alike).

- OCR: seconds per 1024x768 JPEG holding several lines of text, ImageProcessor.process
  vs RapidOCR (same bundled models, same thread count) called on the same file.
- PDF: pages per second of text extraction from a generated multi-page PDF,
  DocumentProcessor.process (output budget large enough to read every page) vs
  pypdf's PdfReader + extract_text on every page.
Wall and CPU seconds are both printed; under load the CPU figures are the steady ones.
Last line: `RESULT ocr_s_per_image=<x> ocr_cpu_s_per_image=<x> pdf_pages_per_s=<n>
pdf_pages_per_cpu_s=<n> ocr_overhead_ratio=<x> pdf_overhead_ratio=<x>` (ratios: processor
CPU time / bare CPU time; both calls are single-threaded with the default --threads 1).

    .venv/bin/python bench/vision_processors.py [--images 5] [--pages 200] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

# Replace the script's own directory on the path: bench/queue.py would shadow the stdlib.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

from services.media_svc.processors.base import ProcessingSuccess  # noqa: E402
from services.media_svc.processors.contract import ProcessorInput  # noqa: E402
from services.media_svc.processors.document import DocumentProcessor  # noqa: E402
from services.media_svc.processors.image import ImageProcessor  # noqa: E402
from tests.helpers.vision_inputs import pdf_bytes, text_image  # noqa: E402

LINES = [
    "Invoice 2231 for consulting services",
    "Total due within thirty days of receipt",
    "Contact billing at the usual address",
    "Thank you for your business",
]


def _timed(action: Callable[[], object], cpu: list[float]) -> float:
    """Wall seconds of one call; its CPU seconds are appended to `cpu` (the figure that
    stays meaningful when other work shares the machine)."""
    started, started_cpu = time.perf_counter(), time.process_time()
    action()
    cpu.append(time.process_time() - started_cpu)
    return time.perf_counter() - started


def bench_ocr(folder: Path, images: int, threads: int) -> tuple[float, float, float]:
    """Wall s/image, CPU s/image, CPU ratio processor/bare."""
    from rapidocr import RapidOCR  # noqa: PLC0415 - the bare call

    from services.media_svc.engines import ocr  # noqa: PLC0415

    path = folder / "page.jpg"
    text_image([((40, 60 + 150 * i), line) for i, line in enumerate(LINES)]).save(
        path, "JPEG", quality=90
    )
    options = ImageProcessor.parse_options({"ocr_threads": threads})
    engine = ImageProcessor.load_engine(options)
    threads_param = threads if threads > 0 else -1
    bare = RapidOCR(
        params={
            "Global.log_level": "warning",
            "Det.model_path": str(ocr.DETECTION_MODEL),
            "Rec.model_path": str(ocr.RECOGNITION_MODEL),
            "Cls.model_path": str(ocr.ORIENTATION_MODEL),
            "EngineConfig.onnxruntime.intra_op_num_threads": threads_param,
            "EngineConfig.onnxruntime.inter_op_num_threads": threads_param,
        }
    )
    bare(str(path))  # open the sessions, as load_engine did for the processor
    item = ProcessorInput("MEDIA_KIND_IMAGE", "image/jpeg", path, size=path.stat().st_size)
    outcome = ImageProcessor.process(engine, options, item)
    assert isinstance(outcome, ProcessingSuccess), outcome
    print(f"ocr output: {outcome.text!r}")
    processor_times: list[float] = []
    bare_times: list[float] = []
    processor_cpu: list[float] = []
    bare_cpu: list[float] = []
    for _ in range(images):
        processor_times.append(
            _timed(lambda: ImageProcessor.process(engine, options, item), processor_cpu)
        )
        bare_times.append(_timed(lambda: bare(str(path)), bare_cpu))
    processor_s = statistics.median(processor_times)
    bare_s = statistics.median(bare_times)
    print(
        f"ocr: processor {processor_s:.3f} s/image ({statistics.median(processor_cpu):.3f} s"
        f" CPU), bare rapidocr {bare_s:.3f} s/image ({statistics.median(bare_cpu):.3f} s CPU)"
    )
    cpu_s = statistics.median(processor_cpu)
    return processor_s, cpu_s, cpu_s / statistics.median(bare_cpu)


def bench_pdf(folder: Path, pages: int, rounds: int = 3) -> tuple[float, float, float]:
    """Wall pages/s, pages per CPU s, CPU ratio processor/bare."""
    from pypdf import PdfReader  # noqa: PLC0415 - the bare call

    path = folder / "report.pdf"
    path.write_bytes(
        pdf_bytes(
            [
                f"Page {n}. " + "Quarterly figures and commentary on the results. " * 12
                for n in range(pages)
            ]
        )
    )
    options = DocumentProcessor.parse_options(
        {"max_pages": pages + 1, "max_output_chars": 10_000_000}
    )
    item = ProcessorInput("MEDIA_KIND_DOCUMENT", "application/pdf", path, file_name="report.pdf")

    def bare() -> int:
        reader = PdfReader(path)
        return sum(len(page.extract_text() or "") for page in reader.pages)

    outcome = DocumentProcessor.process(None, options, item)
    assert isinstance(outcome, ProcessingSuccess), outcome
    assert f"{pages} pages]" in outcome.text
    processor_times: list[float] = []
    bare_times: list[float] = []
    processor_cpu: list[float] = []
    bare_cpu: list[float] = []
    for _ in range(rounds):
        processor_times.append(
            _timed(lambda: DocumentProcessor.process(None, options, item), processor_cpu)
        )
        bare_times.append(_timed(bare, bare_cpu))
    processor_s = statistics.median(processor_times)
    bare_s = statistics.median(bare_times)
    print(
        f"pdf: processor {pages / processor_s:.0f} pages/s"
        f" ({pages / statistics.median(processor_cpu):.0f} per CPU s), bare pypdf"
        f" {pages / bare_s:.0f} pages/s ({pages / statistics.median(bare_cpu):.0f} per CPU s)"
        f" ({pages} pages)"
    )
    cpu_s = statistics.median(processor_cpu)
    return pages / processor_s, pages / cpu_s, cpu_s / statistics.median(bare_cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5)
    parser.add_argument("--pages", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime threads (0: all)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        ocr_s, ocr_cpu_s, ocr_ratio = bench_ocr(folder, args.images, args.threads)
        pdf_rate, pdf_cpu_rate, pdf_ratio = bench_pdf(folder, args.pages)
    print(
        f"RESULT ocr_s_per_image={ocr_s:.3f} ocr_cpu_s_per_image={ocr_cpu_s:.3f}"
        f" pdf_pages_per_s={pdf_rate:.0f} pdf_pages_per_cpu_s={pdf_cpu_rate:.0f}"
        f" ocr_overhead_ratio={ocr_ratio:.3f} pdf_overhead_ratio={pdf_ratio:.3f}"
    )


if __name__ == "__main__":
    main()
