"""A reproducible corpus of Node frames, valid and hostile, for the fuzz and differential
tests.

Frames are built as JSON text by hand (`Obj` keeps duplicate keys, which a dict cannot),
from hypothesis strategies, with a fixed seed and no example database, so every run
and every machine sends the same frames. Each frame says what the contract expects:
`expect` is True (must be accepted), False (must be REJECTED) or None (either; the
mutation may or may not break the frame, e.g. `null` for an optional field).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from services.common.wire import MAX_FRAME_BYTES, MAX_JSON_DEPTH
from tests.helpers.clock import iso_now

BOT = "fuzz-bot"


class Obj(list[tuple[str, Any]]):
    """A JSON object as its key/value pairs, in order, duplicates allowed."""


@dataclass(frozen=True)
class CorpusFrame:
    text: str
    frame_id: str
    kind: str  # the payload, e.g. textMessage
    mutation: str  # "none" for an untouched frame
    expect: bool | None
    provider_message_id: str = ""
    content: str = ""


def dump(value: Any, ascii_only: bool = False) -> str:
    """JSON text of `value`; `Obj` may repeat keys. Lone surrogates are always escaped."""
    if isinstance(value, Obj):
        inner = ",".join(f"{_string(k, ascii_only)}:{dump(v, ascii_only)}" for k, v in value)
        return "{" + inner + "}"
    if isinstance(value, list):
        return "[" + ",".join(dump(v, ascii_only) for v in value) + "]"
    if isinstance(value, str):
        return _string(value, ascii_only)
    if isinstance(value, _Raw):
        return value.text
    return json.dumps(value)


def _string(value: str, ascii_only: bool) -> str:
    text = json.dumps(value, ensure_ascii=ascii_only)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: only its escape can cross the socket
        text = json.dumps(value, ensure_ascii=True)
    return text


@dataclass(frozen=True)
class _Raw:
    """A JSON token written as is (numbers JSON allows but Python would print otherwise)."""

    text: str


UUID_OK = "0f8fad5b-d9cb-469f-a165-70867728950e"


def header(provider_id: str, correspondent: str) -> Obj:
    return Obj(
        [
            ("botId", BOT),
            ("correspondentId", correspondent),
            ("sender", correspondent),
            ("providerMessageId", provider_id),
            ("originatingTime", iso_now()),
        ]
    )


def _payload(kind: str, provider_id: str, correspondent: str, text: str) -> Obj:
    serial = int(provider_id.rsplit("-", 1)[1])
    h = header(provider_id, correspondent)
    if kind == "textMessage":
        return Obj([("header", h), ("message", text)])
    if kind == "mediaMessage":
        return Obj(
            [
                ("header", h),
                ("message", text),
                ("mediaProcessingId", str(uuid.UUID(int=serial + 1, version=4))),
                ("mimeType", "image/jpeg"),
                ("mediaKind", "MEDIA_KIND_IMAGE"),
                ("fileSize", "1024"),
            ]
        )
    if kind == "corruptMediaMessage":
        return Obj(
            [
                ("header", h),
                ("mimeType", "video/mp4"),
                ("mediaKind", "MEDIA_KIND_VIDEO"),
                ("reason", "hash mismatch"),
            ]
        )
    if kind == "quotaExceededMediaMessage":
        return Obj(
            [
                ("header", h),
                ("mediaKind", "MEDIA_KIND_STICKER"),
                ("usedBytes", "5"),
                ("quotaBytes", "4"),
            ]
        )
    if kind == "ack":
        return Obj([("frameId", f"g-{serial}"), ("status", "ACK_STATUS_ACCEPTED")])
    if kind == "sessionEvent":
        return Obj([("botId", BOT), ("state", "SESSION_STATE_OPEN"), ("time", iso_now())])
    raise ValueError(kind)


_SNAKE = {
    "frameId": "frame_id",
    "botId": "bot_id",
    "correspondentId": "correspondent_id",
    "providerMessageId": "provider_message_id",
    "originatingTime": "originating_time",
    "mediaProcessingId": "media_processing_id",
    "mimeType": "mime_type",
    "mediaKind": "media_kind",
    "fileSize": "file_size",
    "usedBytes": "used_bytes",
    "quotaBytes": "quota_bytes",
    "textMessage": "text_message",
    "mediaMessage": "media_message",
}


def _objects(value: Any, path: tuple[int, ...] = ()) -> list[tuple[int, ...]]:
    """Paths (indexes into nested Obj pair lists) of every object in `value`."""
    found = [path] if isinstance(value, Obj) else []
    if isinstance(value, Obj):
        for i, (_, v) in enumerate(value):
            found.extend(_objects(v, (*path, i)))
    return found


def _at(root: Obj, path: tuple[int, ...]) -> Obj:
    node: Any = root
    for i in path:
        node = node[i][1]
    assert isinstance(node, Obj)
    return node


_nested = st.integers(min_value=MAX_JSON_DEPTH + 1, max_value=20_000)
_json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
_surrogate = st.integers(min_value=0xD800, max_value=0xDFFF).map(chr)
_wide_text = st.text(alphabet=st.characters(exclude_categories=["Cs"]), min_size=1, max_size=300)


@st.composite
def node_frame(
    draw: st.DrawFn, *, kinds: tuple[str, ...], serial: Callable[[], int]
) -> CorpusFrame:
    n = serial()
    kind = draw(st.sampled_from(kinds))
    frame_id = f"fz-{n}"
    provider_id = f"WA-FZ-{n}"
    correspondent = f"{n % 37}@s.whatsapp.net"
    text = draw(st.one_of(st.just(f"hello {n}"), _wide_text))
    payload = _payload(kind, provider_id, correspondent, text)
    frame = Obj([("frameId", frame_id), (kind, payload)])
    mutation = draw(
        st.sampled_from(
            (
                "none",
                "none",
                "none",
                "deep",
                "deep_unknown",
                "big_integer",
                "number_2_53",
                "negative",
                "uuid_newline",
                "uuid_upper",
                "surrogate",
                "too_long",
                "duplicate_same",
                "duplicate_spelling",
                "duplicate_frame_id",
                "type_confusion",
                "unknown_field",
                "oversize",
                "bad_json",
                "nan",
                "long_text",
                "snake_case",
                "timestamp",
                "root",
                "padding",
            )
        )
    )
    expect: bool | None = False
    ascii_only = draw(st.booleans())
    objects = _objects(frame)
    target = _at(frame, draw(st.sampled_from(objects)))
    content = text
    if mutation in ("none", "snake_case"):
        expect = True
        if mutation == "snake_case":
            frame = _snake(frame)
    elif mutation == "deep":
        depth = draw(_nested)
        key_index = draw(st.integers(0, len(target) - 1))
        key, _ = target[key_index]
        target[key_index] = (key, _Raw("[" * depth + "]" * depth))
    elif mutation == "deep_unknown":
        depth = draw(_nested)
        target.append(("zz", _Raw('{"a":' * depth + "1" + "}" * depth)))
    elif mutation in ("big_integer", "number_2_53", "negative"):
        if kind not in ("mediaMessage", "quotaExceededMediaMessage"):
            kind = "quotaExceededMediaMessage"
            frame = Obj(
                [("frameId", frame_id), (kind, _payload(kind, provider_id, correspondent, text))]
            )
        field = (
            "fileSize"
            if kind == "mediaMessage"
            else draw(st.sampled_from(["usedBytes", "quotaBytes"]))
        )
        body = frame[1][1]
        value: Any
        if mutation == "big_integer":
            value = str(draw(st.integers(min_value=2**63, max_value=2**64 - 1)))
        elif mutation == "number_2_53":
            value = _Raw(str(draw(st.integers(min_value=2**53, max_value=2**64 - 1))))
        else:
            value = draw(st.sampled_from(["-1", -1, _Raw("-5")]))
        _replace(body, field, value)
    elif mutation in ("uuid_newline", "uuid_upper"):
        kind = "mediaMessage"
        frame = Obj(
            [("frameId", frame_id), (kind, _payload(kind, provider_id, correspondent, text))]
        )
        bad = UUID_OK + "\n" if mutation == "uuid_newline" else UUID_OK.upper()
        _replace(frame[1][1], "mediaProcessingId", bad)
    elif mutation == "surrogate":
        where = draw(st.sampled_from(["frameId", "text"]))
        lone = draw(_surrogate)
        if where == "frameId":
            frame[0] = ("frameId", frame_id + lone)
        else:
            _replace(frame[1][1], "message" if kind != "sessionEvent" else "botId", text + lone)
    elif mutation == "too_long":
        limit = 128
        if kind in ("sessionEvent", "ack"):
            head, key = frame[1][1], "botId" if kind == "sessionEvent" else "frameId"
        else:
            head, key = _at(frame, (1, 0)), "botId"
        head_key = draw(st.sampled_from([key, "frameId"]))
        if head_key == "frameId":
            frame[0] = ("frameId", "😀" * 129)
        else:
            _replace(head, key, "😀" * (limit + 1))
    elif mutation == "duplicate_same":
        key_index = draw(st.integers(0, len(target) - 1))
        key, value = target[key_index]
        target.append((key, draw(st.sampled_from([value, "other"]))))
    elif mutation == "duplicate_spelling":
        spelled = [(i, k) for i, (k, _) in enumerate(frame[1][1]) if k in _SNAKE]
        pairs = frame[1][1] if spelled else frame
        spelled = spelled or [(0, "frameId")]
        i, key = draw(st.sampled_from(spelled))
        pairs.insert(i + draw(st.integers(0, 1)), (_SNAKE[key], pairs[i][1]))
    elif mutation == "duplicate_frame_id":
        frame.append(
            (
                draw(st.sampled_from(["frame_id", "frameId"])),
                draw(st.sampled_from([frame_id, "fz-other"])),
            )
        )
    elif mutation == "type_confusion":
        key_index = draw(st.integers(0, len(target) - 1))
        key, old = target[key_index]
        new: Any = draw(st.one_of(_json_scalars, st.just([]), st.just(Obj())))
        if type(new) is type(old) and not isinstance(new, Obj | list):
            new = [new]
        target[key_index] = (key, new)
        expect = None
    elif mutation == "unknown_field":
        target.append((draw(st.sampled_from(["extra", "frameID", "Message", "@type", ""])), 1))
    elif mutation == "oversize":
        content = "x" * (MAX_FRAME_BYTES + draw(st.integers(1, 1000)))
        _replace(frame[1][1], "message" if kind != "sessionEvent" else "botId", content)
    elif mutation == "bad_json":
        cut = dump(frame, ascii_only)
        # A fraction, not an index: the draws must not depend on the frame's serial.
        at = 1 + int(draw(st.floats(0, 1, exclude_max=True)) * (len(cut) - 2))
        return CorpusFrame(cut[:at], frame_id, kind, mutation, False)
    elif mutation == "root":  # not an object at all
        root: Any = draw(st.one_of(_json_scalars, st.lists(_json_scalars, max_size=3)))
        return CorpusFrame(dump(root), frame_id, kind, mutation, False)
    elif mutation == "padding":  # JSON whitespace is fine, other white characters are not
        pad = draw(st.sampled_from([" ", "\t", "\n", "\r\n", "\u00a0", "\ufeff", "\u2028"]))
        before, after = draw(st.booleans()), draw(st.booleans())
        body = (pad if before else "") + dump(frame, ascii_only) + (pad if after else "")
        return CorpusFrame(body, frame_id, kind, mutation, None)
    elif mutation == "nan":
        target.append(("zz", _Raw(draw(st.sampled_from(["NaN", "Infinity", "-Infinity"])))))
    elif mutation == "long_text":
        if kind == "textMessage":
            content = draw(st.sampled_from(["y", "é", "😀"])) * draw(st.integers(8_001, 60_000))
            _replace(frame[1][1], "message", content)
            expect = True
        else:
            frame.append(("frameId", frame_id))
    elif mutation == "timestamp":
        stamp = draw(
            st.sampled_from(
                [
                    iso_now()[:-1] + ".5Z",
                    iso_now()[:-1] + ".123456789Z",
                    iso_now()[:-1] + "+01:00",
                    iso_now().replace("T", "t"),
                    iso_now()[:-1],
                    iso_now().replace("Z", "z"),
                ]
            )
        )
        if kind in ("sessionEvent", "ack"):
            _replace(frame[1][1], "time", stamp)
        else:
            _replace(_at(frame, (1, 0)), "originatingTime", stamp)
        expect = None
    text_out = dump(frame, ascii_only)
    is_text = kind == "textMessage"
    return CorpusFrame(
        text_out,
        frame_id,
        kind,
        mutation,
        expect,
        provider_id if is_text else "",
        content if is_text else "",
    )


def _replace(pairs: Obj, key: str, value: Any) -> None:
    for i, (k, _) in enumerate(pairs):
        if k == key:
            pairs[i] = (k, value)
            return
    pairs.append((key, value))


def _snake(value: Any) -> Any:
    if isinstance(value, Obj):
        return Obj([(_SNAKE.get(k, k), _snake(v)) for k, v in value])
    return value


def build_corpus(count: int, kinds: tuple[str, ...]) -> list[CorpusFrame]:
    """`count` frames (at least), the same on every run."""
    frames: list[CorpusFrame] = []
    per_example = 10

    def serial() -> int:
        return len(frames) + len(pending)

    pending: list[CorpusFrame] = []

    @settings(
        max_examples=(count + per_example - 1) // per_example,
        derandomize=True,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
        deadline=None,
    )
    @given(st.data())
    def collect(data: st.DataObject) -> None:
        pending.clear()
        for _ in range(per_example):
            pending.append(data.draw(node_frame(kinds=kinds, serial=serial)))
        frames.extend(pending)
        pending.clear()

    collect()
    return frames
