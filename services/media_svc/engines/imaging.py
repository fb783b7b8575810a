"""Image decoding under limits: the header is read before any pixel is decoded, so a
decompression bomb (a small file declaring a huge canvas) is refused before it costs
memory. Pillow is imported here; only worker processes import this module.
"""

from __future__ import annotations

import base64
import io
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from services.media_svc.engines.ocr import OcrEngine
from services.media_svc.processors.base import ProcessingFailure
from services.media_svc.processors.contract import ProcessorLimits

# Decoders offered to a sender's file. Pillow knows dozens of formats; every one is
# attack surface, and chats carry only these (JPEG includes multi-picture MPO).
FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
# Longest side worth decoding for reading text (OCR scales to 2000 px by default);
# larger JPEGs decode reduced (see below).
DECODE_MAX_SIDE = 2560


@dataclass(frozen=True, slots=True)
class DecodedImage:
    """Header facts and the decoded frames that were asked for (RGB or RGBA, loaded)."""

    format: str
    width: int
    height: int
    # None: animated, but the format can only count its frames by decoding them all.
    frame_count: int | None
    frames: list[Image.Image]

    @property
    def animated(self) -> bool:
        return self.frame_count is None or self.frame_count > 1


def dimensions(width: int, height: int) -> str:
    """`1024x768`, with a real multiplication sign in place of the x."""
    return f"{width}\N{MULTIPLICATION SIGN}{height}"


def corrupt(label: str, detail: str) -> ProcessingFailure:
    return ProcessingFailure(
        reason="corrupt", marker=f"[Corrupted {label}: could not be decoded]", detail=detail
    )


def too_large(label: str, detail: str, what: str) -> ProcessingFailure:
    return ProcessingFailure(
        reason="too_large",
        marker=f"[{label.capitalize()} not processed: too large ({what})]",
        detail=detail,
    )


def decode_image(
    path: Path,
    limits: ProcessorLimits,
    label: str,
    *,
    frames: str = "first",
    max_frames: int = 1,
) -> DecodedImage | ProcessingFailure:
    """Opens `path`, checks size, pixels and frames, then decodes the first frame
    (`frames="first"`) or the first and the middle frame (`frames="first_and_middle"`).

    Limits: the file size, `width * height <= max_pixels`, the frame count <= `max_frames`
    (animated images only), and the pixels decoded to reach the middle frame (an
    animated decoder goes through every frame before it) <= `max_pixels * 4`.
    """
    size = path.stat().st_size
    if size > limits.max_file_bytes:
        return too_large(label, f"{size} bytes > {limits.max_file_bytes}", f"{size:,} bytes")
    try:
        # Our own pixel check comes first; Pillow's global bomb guard would only warn
        # (an error under `-W error`) or refuse with its own, larger threshold.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path, formats=FORMATS) as image:
                return _decode_open(image, limits, label, frames, max_frames)
    except Image.DecompressionBombError as exc:
        return too_large(label, str(exc), "decompression bomb")
    except MemoryError:
        return too_large(label, "MemoryError while decoding", "out of memory")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        # Pillow reports truncated and malformed data with all of these.
        return corrupt(label, f"{type(exc).__name__}: {exc}")


def _decode_open(
    image: Image.Image, limits: ProcessorLimits, label: str, frames: str, max_frames: int
) -> DecodedImage | ProcessingFailure:
    width, height = image.size
    pixels = width * height
    if width <= 0 or height <= 0:
        return corrupt(label, f"empty canvas {width}x{height}")
    if pixels > limits.max_pixels:
        return too_large(
            label,
            f"{width}x{height} = {pixels} pixels > {limits.max_pixels}",
            f"{dimensions(width, height)} = {pixels:,} pixels",
        )
    image_format = (image.format or "unknown").upper()
    frame_count = _declared_frames(image)
    if frame_count is not None and frame_count > max_frames and frames != "first":
        return too_large(label, f"{frame_count} frames > {max_frames}", f"{frame_count:,} frames")
    indices = [0]
    if frames == "first_and_middle" and frame_count is not None and frame_count > 2:
        middle = frame_count // 2
        decoded_pixels = pixels * (middle + 1)
        if decoded_pixels > limits.max_pixels * 4:
            return too_large(
                label,
                f"{decoded_pixels} pixels decoded to reach frame {middle}",
                f"{frame_count:,} frames of {dimensions(width, height)}",
            )
        indices.append(middle)
    if image.format == "JPEG" and max(width, height) > 2 * DECODE_MAX_SIDE:
        # The JPEG decoder can scale by 1/2, 1/4 or 1/8 while decoding: a 40 MP photo
        # never exists in memory at full size (the header's dimensions are reported).
        scale = DECODE_MAX_SIDE / max(width, height)
        image.draft("RGB", (max(1, round(width * scale)), max(1, round(height * scale))))
    decoded: list[Image.Image] = []
    for index in indices:
        if index:
            image.seek(index)
        decoded.append(_normalised(image))
    if frames == "first":
        decoded = [ImageOps.exif_transpose(decoded[0])]
    return DecodedImage(image_format, width, height, frame_count, decoded)


def _declared_frames(image: Image.Image) -> int | None:
    """The frame count the container declares (WebP, APNG); for GIF 1, or None when
    animated: GIF can only count by decoding every frame (`n_frames`), so only
    `is_animated` is asked, which looks at the second frame at most."""
    if image.format in {"WEBP", "PNG"}:
        return max(1, int(getattr(image, "n_frames", 1)))
    if image.format == "GIF":
        return None if getattr(image, "is_animated", False) else 1
    # Multi-picture JPEGs (a phone's photo plus previews) and multi-page TIFFs are
    # still pictures: their first image is the one shown.
    return 1


def _normalised(image: Image.Image) -> Image.Image:
    """The current frame decoded into memory as RGB, or RGBA when it has transparency."""
    has_alpha = image.mode in {"RGBA", "LA", "PA"} or "transparency" in image.info
    frame = image.convert("RGBA" if has_alpha else "RGB")
    frame.load()
    return frame


def read_text(engine: OcrEngine, image: Image.Image, label: str) -> list[str] | ProcessingFailure:
    """The OCR lines of `image`, or a too_large failure when the worker's memory limit
    refuses the models' buffers (the same image would fail the same way on a retry)."""
    try:
        return engine.read_lines(image)
    except MemoryError as exc:
        return too_large(label, str(exc), "out of memory")


def jpeg_data_uri(image: Image.Image, max_side: int = 1024) -> str:
    """A `data:image/jpeg;base64,…` URI of `image`, scaled to at most `max_side`."""
    copy = image.convert("RGB")
    copy.thumbnail((max_side, max_side))
    buffer = io.BytesIO()
    copy.save(buffer, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
