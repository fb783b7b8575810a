"""Inputs for the vision and document tests, made on the spot: images with rendered
text (DejaVu Sans, from the Debian package fonts-dejavu-core), stickers, PDFs, DOCX."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

FONT_PATH = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")


def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """DejaVu Sans when installed, else Pillow's built-in scalable font."""
    if FONT_PATH.is_file():
        return ImageFont.truetype(str(FONT_PATH), size)
    return ImageFont.load_default(size)


def text_image(
    lines: list[tuple[tuple[int, int], str]],
    size: tuple[int, int] = (1024, 768),
    *,
    mode: str = "RGB",
    background: tuple[int, ...] | str = "white",
    fill: tuple[int, ...] | str = "black",
    font_size: int = 40,
) -> Image.Image:
    """An image with each `(x, y), text` drawn at its position."""
    image = Image.new(mode, size, background)
    draw = ImageDraw.Draw(image)
    face = font(font_size)
    for (x, y), text in lines:
        draw.text((x, y), text, fill=fill, font=face)
    return image
