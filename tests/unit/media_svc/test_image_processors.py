"""The image and sticker processors on images made here: real OCR, formats, limits,
hostile files, and the describer hook against a real HTTP receiver on loopback."""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw

from services.common.errors import InvalidInputError
from services.media_svc.engines.ocr import OcrEngine
from services.media_svc.processors.base import ProcessingFailure, ProcessingSuccess
from services.media_svc.processors.contract import ProcessorInput
from services.media_svc.processors.describer import describe
from services.media_svc.processors.image import ImageOptions, ImageProcessor
from services.media_svc.processors.sticker import StickerProcessor, unique_lines
from tests.helpers.vision_inputs import font, text_image

X = "\N{MULTIPLICATION SIGN}"


@pytest.fixture(scope="module")
def engine() -> Iterator[OcrEngine]:
    yield ImageProcessor.load_engine(ImageProcessor.parse_options({}))


def _item(path: Path, kind: str = "MEDIA_KIND_IMAGE", mime: str = "image/jpeg") -> ProcessorInput:
    return ProcessorInput(media_kind=kind, mime=mime, path=path, size=path.stat().st_size)


def _image(engine: OcrEngine, path: Path, options: dict[str, Any] | None = None) -> Any:
    parsed = ImageProcessor.parse_options(options or {})
    return ImageProcessor.process(engine, parsed, _item(path))


def _success_text(outcome: object) -> str:
    assert isinstance(outcome, ProcessingSuccess), outcome
    return outcome.text


def _failure(outcome: object) -> ProcessingFailure:
    assert isinstance(outcome, ProcessingFailure), outcome
    return outcome


def test_jpeg_with_text_gives_format_dimensions_and_lines(
    engine: OcrEngine, tmp_path: Path
) -> None:
    path = tmp_path / "photo.jpg"
    text_image([((40, 80), "Meeting moved to Friday"), ((40, 300), "Room 4B at noon")]).save(
        path, "JPEG", quality=90
    )
    text = _success_text(_image(engine, path))
    assert text == (
        f'[Image: JPEG 1024{X}768] Text in the image: "Meeting moved to Friday\nRoom 4B at noon"'
    )


def test_blank_png_says_no_text(engine: OcrEngine, tmp_path: Path) -> None:
    path = tmp_path / "blank.png"
    Image.new("RGB", (800, 600), (200, 220, 240)).save(path, "PNG")
    assert _success_text(_image(engine, path)) == f"[Image: PNG 800{X}600, no text found]"


def test_long_text_is_bounded_with_a_marker(engine: OcrEngine, tmp_path: Path) -> None:
    path = tmp_path / "page.png"
    text_image([((20, 20 + 60 * i), f"line number {i} of the page") for i in range(10)]).save(path)
    text = _success_text(_image(engine, path, {"max_output_chars": 80}))
    assert text.startswith(f'[Image: PNG 1024{X}768] Text in the image: "line number 0')
    assert "more characters not shown]" in text
    assert len(text) < 80 + 45


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _bomb_png(path: Path, width: int, height: int, rows: int) -> None:
    """A grayscale PNG declaring width x height whose first `rows` rows are real zeros
    (compressed ~1000:1): small on disk, huge once decoded."""
    compressor = zlib.compressobj(9)
    row = b"\x00" * (width + 1)
    data = b"".join(compressor.compress(row) for _ in range(rows)) + compressor.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", data)
        + _png_chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(
    ("width", "height"),
    [(7000, 7000), (100_000, 100_000)],  # over our limit only; over Pillow's own too
)
def test_decompression_bomb_is_refused_from_the_header(
    engine: OcrEngine, tmp_path: Path, width: int, height: int
) -> None:
    path = tmp_path / "bomb.png"
    _bomb_png(path, width, height, rows=200)
    assert path.stat().st_size < 100_000
    started = time.monotonic()
    failure = _failure(_image(engine, path))
    assert time.monotonic() - started < 1.0
    assert failure.reason == "too_large"
    assert failure.marker.startswith("[Image not processed: too large (")


def test_real_bomb_under_a_pool_limit(engine: OcrEngine, tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    _bomb_png(path, 3000, 3000, rows=3000)
    failure = _failure(_image(engine, path, {"max_pixels": 1_000_000}))
    assert failure.marker == f"[Image not processed: too large (3000{X}3000 = 9,000,000 pixels)]"


def _encoded(image_format: str) -> bytes:
    buffer = io.BytesIO()
    text_image([((40, 80), "truncated")], (640, 480)).save(buffer, image_format)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"this is not an image at all" * 50,
        os.urandom(4096),
        _encoded("JPEG")[:600],  # header intact, pixel data cut
        _encoded("PCX"),  # a real image, in a format chats never carry
        b"\x89PNG\r\n\x1a\n" + b"\x00" * 40,
        b"RIFF\x10\x00\x00\x00WEBPVP8 " + b"\xff" * 30,
    ],
    ids=["empty", "text", "random", "truncated-jpeg", "pcx", "broken-png", "broken-webp"],
)
def test_garbage_and_truncated_images_are_corrupt(
    engine: OcrEngine, tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "bad"
    path.write_bytes(content)
    started = time.monotonic()
    failure = _failure(_image(engine, path))
    assert time.monotonic() - started < 2.0
    assert failure.reason == "corrupt"
    assert failure.marker == "[Corrupted image: could not be decoded]"


def test_files_over_the_size_limit_are_not_opened(engine: OcrEngine, tmp_path: Path) -> None:
    path = tmp_path / "big.jpg"
    path.write_bytes(b"\xff" * 5000)
    failure = _failure(_image(engine, path, {"max_file_bytes": 4096}))
    assert (failure.reason, failure.marker) == (
        "too_large",
        "[Image not processed: too large (5,000 bytes)]",
    )


def test_bad_options_are_refused_naming_the_option() -> None:
    with pytest.raises(InvalidInputError, match="unknown options"):
        ImageProcessor.parse_options({"colour": "blue"})
    with pytest.raises(InvalidInputError, match="describer_model"):
        ImageProcessor.parse_options({"describer_url": "http://127.0.0.1:1/v1/chat/completions"})
    with pytest.raises(InvalidInputError, match="describer_url"):
        ImageProcessor.parse_options(
            {"describer_url": "file:///etc/passwd", "describer_model": "m"}
        )
    with pytest.raises(InvalidInputError, match=r"need options\.describer_url"):
        ImageProcessor.parse_options({"describer_model": "m"})
    with pytest.raises(InvalidInputError, match="VISION_KEY_NOT_SET_ANYWHERE"):
        ImageProcessor.parse_options(
            {
                "describer_url": "http://127.0.0.1:1/",
                "describer_model": "m",
                "describer_api_key_env": "VISION_KEY_NOT_SET_ANYWHERE",
            }
        )
    with pytest.raises(InvalidInputError, match="ocr_min_score"):
        ImageProcessor.parse_options({"ocr_min_score": 2})


class _Receiver(BaseHTTPRequestHandler):
    """An OpenAI-compatible chat/completions endpoint whose behaviour the test picks."""

    mode = "ok"
    requests: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append({"body": body, "auth": self.headers.get("Authorization")})
        if self.mode == "slow":
            time.sleep(2.0)
        if self.mode == "error":
            self.send_response(500)
            self.end_headers()
            return
        answer = {"choices": [{"message": {"role": "assistant", "content": " A red  sign. "}}]}
        payload = json.dumps(answer).encode()
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except OSError:
            pass  # the slow case: the client gave up, as it should

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, type[_Receiver]]]:
    handler = type("Receiver", (_Receiver,), {"requests": [], "mode": "ok"})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/v1/chat/completions", handler
    finally:
        server.shutdown()
        server.server_close()


def _describer_options(url: str, timeout: float = 5.0) -> ImageOptions:
    return ImageProcessor.parse_options(
        {
            "describer_url": url,
            "describer_model": "vision-test",
            "describer_api_key_env": "VISION_TEST_KEY",
            "describer_timeout_seconds": timeout,
        }
    )


def test_describer_adds_a_description(
    engine: OcrEngine,
    tmp_path: Path,
    receiver: tuple[str, type[_Receiver]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("VISION_TEST_KEY", "sk-test")
    url, handler = receiver
    path = tmp_path / "sign.png"
    text_image([((40, 30), "STOP")], (240, 240)).save(path)
    text = _success_text(ImageProcessor.process(engine, _describer_options(url), _item(path)))
    assert text == f'[Image: PNG 240{X}240] Description: A red sign. Text in the image: "STOP"'
    (request,) = handler.requests
    assert request["auth"] == "Bearer sk-test"
    assert request["body"]["model"] == "vision-test"
    image_part = request["body"]["messages"][0]["content"][1]
    assert image_part["image_url"]["url"].startswith("data:image/jpeg;base64,")


@pytest.mark.parametrize("mode", ["error", "slow"])
def test_describer_failure_never_fails_the_job(
    engine: OcrEngine,
    tmp_path: Path,
    receiver: tuple[str, type[_Receiver]],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    mode: str,
) -> None:
    monkeypatch.setenv("VISION_TEST_KEY", "sk-test")
    url, handler = receiver
    handler.mode = mode
    path = tmp_path / "sign.png"
    text_image([((40, 30), "STOP")], (240, 240)).save(path)
    options = _describer_options(url, timeout=0.5)
    assert options.describer is not None
    started = time.monotonic()
    assert describe(options.describer, "data:image/jpeg;base64,AAAA") is None
    assert time.monotonic() - started < 1.5  # did not wait for the slow answer
    outcome = ImageProcessor.process(engine, options, _item(path))
    assert _success_text(outcome) == f'[Image: PNG 240{X}240] Text in the image: "STOP"'
    assert "image describer" in caplog.text
    assert len(handler.requests) == 2


# Stickers


def _sticker(engine: OcrEngine, path: Path, options: dict[str, Any] | None = None) -> Any:
    parsed = StickerProcessor.parse_options(options or {})
    return StickerProcessor.process(engine, parsed, _item(path, "MEDIA_KIND_STICKER", "image/webp"))


def _frame(text: str, dot: int = 0) -> Image.Image:
    """A transparent 512x512 sticker frame; `dot` moves a small mark so that WebP keeps
    otherwise identical frames apart instead of merging them."""
    image = text_image(
        [((30, 200), text)], (512, 512), mode="RGBA", background=(0, 0, 0, 0), font_size=48
    )
    image.putpixel((5 + dot, 500), (255, 0, 0, 255))
    return image


def test_static_webp_sticker(engine: OcrEngine, tmp_path: Path) -> None:
    path = tmp_path / "static.webp"
    _frame("GOOD MORNING").save(path, "WEBP")
    assert _success_text(_sticker(engine, path)) == '[Sticker] Text in the sticker: "GOOD MORNING"'


def test_png_sticker_without_text(engine: OcrEngine, tmp_path: Path) -> None:
    path = tmp_path / "blank.png"
    Image.new("RGBA", (512, 512), (0, 0, 0, 0)).save(path)
    assert _success_text(_sticker(engine, path)) == "[Sticker]"


def test_animated_webp_reads_first_and_middle_frame_once_each(
    engine: OcrEngine, tmp_path: Path
) -> None:
    # Frames 0-5 say HELLO, 6-11 say HELLO and WORLD: the middle frame (6) repeats HELLO.
    frames = [_frame("HELLO", dot) for dot in range(6)]
    for dot in range(6, 12):
        frame = _frame("HELLO", dot)
        ImageDraw.Draw(frame).text((30, 330), "WORLD", fill="black", font=font(48))
        frames.append(frame)
    path = tmp_path / "animated.webp"
    frames[0].save(path, "WEBP", save_all=True, append_images=frames[1:], duration=80, loop=0)
    text = _success_text(_sticker(engine, path))
    assert text == '[Animated sticker, 12 frames] Text in the sticker: "HELLO\nWORLD"'


def test_animated_sticker_over_the_frame_limit(engine: OcrEngine, tmp_path: Path) -> None:
    frames = [Image.new("RGBA", (64, 64), (i * 20, 0, 0, 255)) for i in range(8)]
    path = tmp_path / "many.webp"
    frames[0].save(path, "WEBP", save_all=True, append_images=frames[1:], duration=50)
    failure = _failure(_sticker(engine, path, {"max_frames": 5}))
    assert (failure.reason, failure.marker) == (
        "too_large",
        "[Sticker not processed: too large (8 frames)]",
    )


def test_sticker_bomb_and_garbage(engine: OcrEngine, tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.png"
    _bomb_png(bomb, 9000, 9000, rows=10)
    frames = [_frame("HI", dot) for dot in range(4)]
    whole = io.BytesIO()
    frames[0].save(whole, "WEBP", save_all=True, append_images=frames[1:], duration=50)
    garbage = tmp_path / "truncated.webp"
    garbage.write_bytes(whole.getvalue()[: len(whole.getvalue()) // 2])
    started = time.monotonic()
    assert _failure(_sticker(engine, bomb)).reason == "too_large"
    assert _failure(_sticker(engine, garbage)).marker == "[Corrupted sticker: could not be decoded]"
    assert time.monotonic() - started < 2.0


def test_unique_lines_ignores_case_and_spacing() -> None:
    assert unique_lines([["Hello  World", "Bye"], ["hello world", "Later"]]) == [
        "Hello  World",
        "Bye",
        "Later",
    ]


def test_animated_gif_is_an_animated_image_read_on_its_first_frame(
    engine: OcrEngine, tmp_path: Path
) -> None:
    frames = [text_image([((10, 10), "GIF")], (160, 160), font_size=32)]
    frames.append(Image.new("RGB", (160, 160), "black"))
    path = tmp_path / "clip.gif"
    frames[0].save(path, "GIF", save_all=True, append_images=frames[1:], duration=100)
    assert _success_text(_image(engine, path)) == (
        f'[Image: GIF 160{X}160, animated] Text in the image: "GIF"'
    )
    sticker = _success_text(_sticker(engine, path))
    assert sticker == '[Animated sticker] Text in the sticker: "GIF"'


_MEMORY_LIMIT_SCRIPT = """
import json, pathlib, resource, sys
limit = 1400 << 20
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))  # before load, as a pool worker
from services.media_svc.processors.contract import ProcessorInput
from services.media_svc.processors.image import ImageProcessor
options = ImageProcessor.parse_options({})
engine = ImageProcessor.load_engine(options)
results = []
for name in sys.argv[1:]:
    path = pathlib.Path(name)
    item = ProcessorInput("MEDIA_KIND_IMAGE", "image/png", path)
    outcome = ImageProcessor.process(engine, options, item)
    results.append(getattr(outcome, "text", None) or outcome.marker)
print(json.dumps(results))
"""


def test_memory_limit_refuses_a_big_image_and_the_worker_goes_on(tmp_path: Path) -> None:
    # A 2560x2560 page needs ~1.9 GB of address space for OCR; 1024x768 about 1 GB.
    big = tmp_path / "big.png"
    text_image([((100, 300), "big page")], (2560, 2560), font_size=120).save(big)
    small = tmp_path / "small.png"
    text_image([((40, 60), "small page")], (1024, 768)).save(small)
    done = subprocess.run(
        [sys.executable, "-c", _MEMORY_LIMIT_SCRIPT, str(big), str(small)],
        cwd=Path(__file__).resolve().parents[3],
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [
        "[Image not processed: too large (out of memory)]",
        f'[Image: PNG 1024{X}768] Text in the image: "small page"',
    ]
