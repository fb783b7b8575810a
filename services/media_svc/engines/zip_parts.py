"""The defences every zip-based document shares (DOCX, XLSX, PPTX, ODT, ODS, ODP, EPUB),
and safe reading of its XML parts.

The zip directory is checked before any part is read: entry count, total uncompressed
size, each entry's compression ratio and each XML part's size. Both the total and the
ratio are needed: 1 GiB of spaces in 1 MB is caught by the total, 100 MB of empty
paragraphs (183 KB on disk, 45 s and 5.4 GB in python-docx) only by the ratio (ordinary
entries compress ~32:1, these 685-1028:1). A part is then read with a hard cap whatever
its header claims, and parsed by defusedxml: no DTD, no entity expansion, no external
resource is ever fetched.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from typing import IO
from xml.etree.ElementTree import Element

from defusedxml import ElementTree as SafeElementTree

from services.media_svc.engines.extracted import too_large
from services.media_svc.processors.base import ProcessingFailure
from services.media_svc.processors.contract import ProcessorLimits

# Archive entries smaller than this are not held to the compression-ratio cap: a tiny
# entry cannot be a bomb, and small repetitive XML parts legitimately compress well.
RATIO_FLOOR_BYTES = 1024 * 1024
# Entries in an office zip; Word writes a few dozen, a 300-slide deck about 1,500.
MAX_ZIP_ENTRIES = 5000
# Largest XML part parsed. An element tree takes many times the size of its XML (100 MB
# of empty paragraphs took 5.4 GB), and a 500-page book's document.xml is ~10 MB.
MAX_XML_PART_BYTES = 32 * 1024 * 1024


class PartTooLargeError(Exception):
    """A part holds more than its header said, or more than the cap."""


def check_archive(
    entries: list[zipfile.ZipInfo], limits: ProcessorLimits
) -> ProcessingFailure | None:
    if len(entries) > MAX_ZIP_ENTRIES:
        return too_large(f"{len(entries):,} archive entries", f"> {MAX_ZIP_ENTRIES} entries")
    total = sum(entry.file_size for entry in entries)
    if total > limits.max_decompressed_bytes:
        return too_large(
            f"{total:,} bytes uncompressed",
            f"{total} uncompressed bytes > {limits.max_decompressed_bytes}",
        )
    for entry in entries:
        ratio = entry.file_size / max(entry.compress_size, 1)
        if entry.file_size >= RATIO_FLOOR_BYTES and ratio > limits.max_compression_ratio:
            return too_large(
                f"compressed {ratio:,.0f}:1",
                f"{entry.filename!r}: {entry.file_size} bytes from {entry.compress_size}"
                f" (ratio {ratio:.0f} > {limits.max_compression_ratio:g})",
            )
        if entry.filename.endswith((".xml", ".rels")) and entry.file_size > MAX_XML_PART_BYTES:
            return too_large(
                f"{entry.file_size:,} bytes of XML",
                f"{entry.filename!r}: {entry.file_size} bytes > {MAX_XML_PART_BYTES}",
            )
    return None


class _CappedReader:
    """A file-like view of a zip member that refuses to yield more than `cap` bytes
    (a forged header can claim a small size for a large member)."""

    def __init__(self, handle: IO[bytes], cap: int) -> None:
        self._handle = handle
        self._left = cap

    def read(self, size: int = -1) -> bytes:
        want = self._left + 1 if size < 0 else min(size, self._left + 1)
        data = self._handle.read(want)
        self._left -= len(data)
        if self._left < 0:
            raise PartTooLargeError("part larger than its cap")
        return data


def read_part(archive: zipfile.ZipFile, name: str, cap: int = MAX_XML_PART_BYTES) -> bytes:
    with archive.open(name) as handle:
        return _CappedReader(handle, cap).read()


def parse_part(archive: zipfile.ZipFile, name: str) -> Element:
    """The part's XML root (defusedxml: DTDs and entities refused)."""
    root: Element = SafeElementTree.fromstring(read_part(archive, name), forbid_dtd=True)
    return root


def stream_part(archive: zipfile.ZipFile, name: str) -> Iterator[tuple[str, Element]]:
    """("start"|"end", element) events of a part, for parts too large to hold as a tree
    (a worksheet); the caller clears elements it is done with and may stop early."""
    with archive.open(name) as handle:
        capped = _CappedReader(handle, MAX_XML_PART_BYTES)
        yield from SafeElementTree.iterparse(capped, events=("start", "end"), forbid_dtd=True)


def local(tag: str) -> str:
    """`p` for `{http://…/drawingml}p`."""
    return tag.rpartition("}")[2]


def texts(element: Element, wanted: str = "t") -> str:
    """The concatenated text of every `wanted` descendant (`a:t`, `w:t`, `t`)."""
    return "".join(node.text or "" for node in element.iter() if local(node.tag) == wanted)
