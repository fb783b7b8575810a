"""Text out of HTML and RTF, with the standard library only.

HTML: the visible text (no scripts, styles, templates or head metadata but the title),
a line break at every block element. RTF: the text of the body groups (font, colour and
style tables, pictures, headers and other `\\*` destinations skipped), `\\par` and
`\\line` as line breaks, `\\'hh` in the document's code page and `\\uN` as Unicode.
Both run in time linear in the input, which the caller has already bounded in size.
"""

from __future__ import annotations

import codecs
import re
from html.parser import HTMLParser

_SKIPPED_HTML = frozenset({"script", "style", "template", "noscript", "svg", "math", "head"})
_BLOCK_HTML = frozenset(
    {
        "p", "div", "br", "li", "ul", "ol", "tr", "table", "section", "article", "header",
        "footer", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "hr", "title",
        "dd", "dt", "nav", "aside", "main", "figure", "figcaption", "form", "address",
    }
)  # fmt: skip


class _TextParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping: list[str] = []
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self._in_title = True
        elif tag in _SKIPPED_HTML and tag not in {"br", "hr"}:
            self._skipping.append(tag)
        if tag in _BLOCK_HTML:
            self.parts.append("\n")
        elif tag in {"td", "th"}:
            self.parts.append(" | ")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        elif self._skipping and self._skipping[-1] == tag:
            self._skipping.pop()
        if tag in _BLOCK_HTML:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if self._in_title or not self._skipping:
            self.parts.append(data)


def html_text(markup: str) -> str:
    parser = _TextParser()
    parser.feed(markup)
    parser.close()
    lines = (" ".join(line.split()).strip(" |") for line in "".join(parser.parts).split("\n"))
    return "\n".join(line for line in lines if line)


# RTF

_RTF_TOKEN = re.compile(
    rb"\\([a-zA-Z]{1,32})(-?\d{1,10})? ?|\\'([0-9a-fA-F]{2})|\\(.)|([{}])|([^\\{}\r\n]+)|[\r\n]+",
    re.DOTALL,
)
# Destinations whose text is not part of the document body.
_RTF_SKIPPED = frozenset(
    {
        "fonttbl", "colortbl", "stylesheet", "info", "pict", "object", "header", "footer",
        "headerl", "headerr", "footerl", "footerr", "listtable", "listoverridetable",
        "revtbl", "rsidtbl", "xmlnstbl", "themedata", "colorschememapping", "datastore",
        "latentstyles", "generator", "fldinst", "bkmkstart", "bkmkend", "field_instructions",
    }
)  # fmt: skip
_RTF_BREAKS = {"par": "\n", "line": "\n", "row": "\n", "page": "\n", "sect": "\n", "tab": "\t"}
_RTF_CHARACTERS = {
    "cell": " | ",
    "emdash": "\u2014",
    "endash": "\u2013",
    "bullet": "\u2022",
    "lquote": "\u2018",
    "rquote": "\u2019",
    "ldblquote": "\u201c",
    "rdblquote": "\u201d",
}


def rtf_text(data: bytes) -> str:
    """The body text of an RTF document (see the module docstring)."""
    encoding = "cp1252"
    skip_depth: int | None = None  # the group depth at which skipping began
    depth = 0
    uc_skip = 1  # characters after \uN that stand for it in older readers
    pending_skip = 0
    out: list[str] = []
    star = False
    for match in _RTF_TOKEN.finditer(data):
        word, arg, hex_byte, symbol, brace, text = match.groups()
        if brace == b"{":
            depth += 1
            star = False
            continue
        if brace == b"}":
            if skip_depth is not None and depth <= skip_depth:
                skip_depth = None
            depth -= 1
            continue
        skipping = skip_depth is not None
        if word is not None:
            name = word.decode("ascii")
            if name == "ansicpg" and arg and not skipping:
                encoding = _codepage(int(arg), encoding)
            elif name == "uc" and arg:
                uc_skip = max(0, int(arg))
            elif (star or name in _RTF_SKIPPED) and not skipping:
                skip_depth = depth
            elif skipping:
                pass
            elif name == "u" and arg:
                code = int(arg) % 65536
                out.append(chr(code) if code not in range(0xD800, 0xE000) else "")
                pending_skip = uc_skip
            elif name in _RTF_BREAKS:
                out.append(_RTF_BREAKS[name])
            elif name in _RTF_CHARACTERS:
                out.append(_RTF_CHARACTERS[name])
            star = False
            continue
        if symbol is not None:
            if symbol == b"*":
                star = True
            elif not skipping and symbol in b"\\{}":
                out.append(symbol.decode("ascii"))
            elif not skipping and symbol == b"~":
                out.append("\u00a0")
            continue
        if skipping:
            continue
        if hex_byte is not None:
            if pending_skip:
                pending_skip -= 1
            else:
                out.append(bytes([int(hex_byte, 16)]).decode(encoding, "replace"))
            continue
        if text is not None:
            chunk = text.decode(encoding, "replace")
            if pending_skip:
                chunk, pending_skip = chunk[pending_skip:], max(0, pending_skip - len(chunk))
            out.append(chunk)
    return "".join(out)


def _codepage(number: int, current: str) -> str:
    name = f"cp{number}"
    try:
        codecs.lookup(name)
    except LookupError:
        return current
    return name
