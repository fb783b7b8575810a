"""The common frame decoded by orjson, leaving every verdict to the strict decoder.

`services.common.wire` decodes with the standard `json` module and hooks that refuse a
key given twice (or in two spellings), NaN/Infinity and numbers of 2**53 or more. Those
hooks run in Python for every object and number, about a tenth of the gateway's CPU per
text frame. Here orjson decodes, and the result is used only when it is provably what
the strict decoder returns: anything orjson refuses, any key it may have collapsed, any
number out of range, any two spellings of one field gives None, and the caller decodes
again the strict way (so every error message stays the strict decoder's own).
"""

from __future__ import annotations

import re
from typing import Any

import orjson

#: The end of an object key: a closing quote, JSON whitespace, a colon. An unescaped
#: quote so followed ends a key, or opens a string value that starts with a colon: the
#: count can only come out high, never low, and a high count (like a collapsed duplicate)
#: sends the frame to the strict decoder.
_KEY_END = re.compile(r'"[ \t\n\r]*:')


def loads_plain(text: str, max_number: int) -> Any | None:
    """The decoded JSON value, or None when only the strict decoder may judge it."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    keys = _plain_keys(value, max_number)
    if keys is None or keys != keys_in(text):
        return None  # a key given twice: orjson kept the last one silently
    return value


def keys_in(text: str) -> int:
    """How many object keys the (valid) JSON text spells out, duplicates included."""
    if "\\" not in text:
        return len(_KEY_END.findall(text))
    count = 0
    for match in _KEY_END.finditer(text):
        before = match.start() - 1
        while before >= 0 and text[before] == "\\":
            before -= 1
        # An odd run of backslashes escapes the quote: it is inside a string.
        count += (match.start() - 1 - before) % 2 == 0
    return count


def _plain_keys(value: Any, max_number: int) -> int | None:
    """Keys in the decoded tree; None for a number the strict decoder refuses or two
    spellings of one field (frameId, frame_id) in one object."""
    kind = type(value)
    if kind is dict:
        keys = len(value)
        if len({key.replace("_", "").lower() for key in value}) != keys:
            return None
        for item in value.values():
            inner = _plain_keys(item, max_number)
            if inner is None:
                return None
            keys += inner
        return keys
    if kind is list:
        keys = 0
        for item in value:
            inner = _plain_keys(item, max_number)
            if inner is None:
                return None
            keys += inner
        return keys
    if (kind is int or kind is float) and not abs(value) < max_number:
        return None
    return 0
