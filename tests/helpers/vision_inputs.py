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


def pdf_bytes(
    pages: list[str], *, user_password: str | None = None, encryption: str = "RC4"
) -> bytes:
    """A PDF with one page per string (fpdf2, core Helvetica font: Latin-1 text),
    encrypted (`encryption`: RC4, AES_128, AES_256) when a user password is given."""
    from fpdf import FPDF  # noqa: PLC0415 - only the document tests need it
    from fpdf.enums import EncryptionMethod  # noqa: PLC0415

    document = FPDF()
    document.set_font("Helvetica", size=12)
    for text in pages:
        document.add_page()
        document.multi_cell(0, 8, text)
    if user_password is not None:
        document.set_encryption(
            owner_password="owner-secret",
            user_password=user_password,
            encryption_method=EncryptionMethod[encryption],
        )
    return bytes(document.output())


def pdf_declaring_pages(declared: int, kids: int = 1) -> bytes:
    """A hand-written PDF whose page tree declares `declared` pages (/Count) and holds
    `kids` references to one real page: the shape of a huge-page-count attack without
    writing the pages."""
    content = b"BT /F1 12 Tf 72 720 Td (Hello from a crafted PDF) Tj ET"
    kid_refs = " ".join(["3 0 R"] * kids)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Count {declared} /Kids [{kid_refs}] >>".encode(),
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R"
        b" /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def docx_bytes(paragraphs: list[str], table: list[list[str]] | None = None) -> bytes:
    """A DOCX written by python-docx: the paragraphs, then the table if any."""
    import io  # noqa: PLC0415

    import docx  # noqa: PLC0415 - only the document tests need it

    document = docx.Document()
    for text in paragraphs:
        document.add_paragraph(text)
    if table:
        grid = document.add_table(rows=len(table), cols=len(table[0]))
        for row, values in zip(grid.rows, table, strict=True):
            for cell, value in zip(row.cells, values, strict=True):
                cell.text = value
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def repeated_deflate(chunk: bytes, times: int) -> bytes:
    """Raw deflate data of `chunk` repeated `times` times, made by compressing the
    chunk once: after a full flush the compressor starts from scratch, so every copy
    of the chunk compresses to the same bytes, which can simply be repeated."""
    import zlib  # noqa: PLC0415

    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = compressor.compress(chunk) + compressor.flush(zlib.Z_FULL_FLUSH)
    return block * times + zlib.compressobj(9, zlib.DEFLATED, -15).flush()


def zip_with_deflated_entry(name: str, deflated: bytes, size: int, crc: int) -> bytes:
    """A one-entry ZIP64 archive around already deflated data (a zip bomb in the
    shape a sender would craft, without spending the CPU to compress it)."""
    import struct  # noqa: PLC0415

    encoded = name.encode()
    extra = struct.pack("<HHQQ", 0x0001, 16, size, len(deflated))
    local = (
        struct.pack(
            "<IHHHHHIIIHH",
            0x04034B50,
            45,
            0,
            8,
            0,
            0x21,
            crc,
            0xFFFFFFFF,
            0xFFFFFFFF,
            len(encoded),
            len(extra),
        )
        + encoded
        + extra
    )
    central = (
        struct.pack(
            "<IHHHHHHIIIHHHHHII",
            0x02014B50,
            45,
            45,
            0,
            8,
            0,
            0x21,
            crc,
            0xFFFFFFFF,
            0xFFFFFFFF,
            len(encoded),
            len(extra),
            0,
            0,
            0,
            0,
            0,
        )
        + encoded
        + extra
    )
    directory_offset = len(local) + len(deflated)
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, len(central), directory_offset, 0)
    return local + deflated + central + end


def docx_spaces_bomb(gib: int = 1) -> bytes:
    """`word/document.xml` holding `gib` GiB of spaces, about 1 MB compressed."""
    import zlib  # noqa: PLC0415

    chunk = b" " * (1 << 20)
    crc = 0
    for _ in range(1024 * gib):
        crc = zlib.crc32(chunk, crc)
    return zip_with_deflated_entry(
        "word/document.xml", repeated_deflate(chunk, 1024 * gib), len(chunk) * 1024 * gib, crc
    )


def docx_empty_paragraphs_bomb(megabytes: int = 100) -> bytes:
    """A real DOCX (python-docx's parts) whose body is `megabytes` MB of empty
    paragraphs: under any total-size cap that lets normal documents through."""
    import io  # noqa: PLC0415
    import zipfile  # noqa: PLC0415

    base = zipfile.ZipFile(io.BytesIO(docx_bytes(["x"])))
    head = (
        b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        b'<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">'
        b"<w:body>"
    )
    tail = b"</w:body></w:document>"
    paragraphs = b"<w:p/>" * ((1 << 20) // 6)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for info in base.infolist():
            if info.filename != "word/document.xml":
                archive.writestr(info, base.read(info.filename))
        with archive.open("word/document.xml", "w", force_zip64=True) as entry:
            entry.write(head)
            for _ in range(megabytes):
                entry.write(paragraphs)
            entry.write(tail)
    return out.getvalue()
