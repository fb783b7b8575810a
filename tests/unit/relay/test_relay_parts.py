"""The relay's pure parts: signature, body, reply parsing, configuration."""

from __future__ import annotations

import json
import random
import time

import pytest
from chatbot.common.v1 import message_pb2 as m

from services.common.errors import InvalidInputError
from services.common.store import StoredMessage
from services.relay.config import RelayConfig
from services.relay.payload import Reply, from_store, from_stream, reply_of
from services.relay.relay import backoff_delay
from services.relay.signing import signature, verify
from tests.helpers.clock import utc_now


def test_signature_covers_timestamp_and_body() -> None:
    now = int(time.time())
    body = b'{"a":1}'
    signed = signature("secret-secret-secret", now, body)
    assert signed.startswith("sha256=") and len(signed) == 7 + 64
    assert verify("secret-secret-secret", str(now), body, signed, now)
    assert not verify("secret-secret-secret", str(now), b'{"a":2}', signed, now)
    assert not verify("other-secret-secret!", str(now), body, signed, now)
    assert not verify("secret-secret-secret", str(now + 1), body, signed, now)
    # A replayed delivery with its original headers is refused once it is too old.
    assert not verify("secret-secret-secret", str(now), body, signed, now + 301)
    assert not verify("secret-secret-secret", "not-a-number", body, signed, now)


def test_a_streamed_and_a_stored_message_give_the_same_body() -> None:
    sent = utc_now(-5)
    addressed = m.AddressedMessage(
        bot_id="bot-1",
        provider_name="whatsapp_baileys",
        correspondent_id="c1",
        sequence=42,
        message=m.Message(
            id=7,
            content="[Image] a cat",
            sender="c1",
            source=m.MESSAGE_SOURCE_USER,
            provider_message_id="WA-7",
            message_size=13,
            mime_type="image/jpeg",
            media_kind=m.MEDIA_KIND_IMAGE,
            group=m.GroupInfo(group_id="g@g.us", group_name="Family"),
        ),
    )
    addressed.message.originating_time.FromDatetime(sent)
    stored = StoredMessage(
        bot_id="bot-1",
        provider_name="whatsapp_baileys",
        correspondent_id="c1",
        id=7,
        content="[Image] a cat",
        sender="c1",
        source="user",
        originating_time=sent,
        provider_message_id="WA-7",
        message_size=13,
        group_id="g@g.us",
        group_name="Family",
        mime_type="image/jpeg",
        media_kind="MEDIA_KIND_IMAGE",
        sequence=42,
    )
    live, replayed = from_stream(addressed), from_store(stored)
    assert live == replayed
    assert live.idempotency_key == "bot-1:42"
    document = json.loads(live.body)
    assert document["sequence"] == 42 and document["message"]["group"]["group_name"] == "Family"
    assert "original_filename" not in document["message"]
    assert document["message"]["source"] == "user"
    assert document["message"]["media_kind"] == "MEDIA_KIND_IMAGE"


def test_reply_parsing() -> None:
    assert reply_of(b"") is None
    assert reply_of(b"not json") is None
    assert reply_of(b'{"ok": true}') is None
    assert reply_of(b'{"reply": {"text": "hi"}}') == Reply("hi")
    assert reply_of(b'{"reply": {"text": "hi", "quoted_provider_message_id": "WA-1"}}') == Reply(
        "hi", "WA-1"
    )
    image = reply_of(
        b'{"reply": {"type": "image", "media": {"url": "https://example.org/a.png"}, "text": "c"}}'
    )
    assert image == Reply(
        "c", None, (("type", "image"), ("media", {"url": "https://example.org/a.png"}))
    )
    assert image.request("chat") == {
        "correspondent_id": "chat",
        "type": "image",
        "media": {"url": "https://example.org/a.png"},
        "text": "c",
    }
    reaction = reply_of(b'{"reply": {"type": "reaction", "emoji": "", "target_message_id": "W"}}')
    assert reaction is not None and reaction.request("chat") == {
        "correspondent_id": "chat",
        "type": "reaction",
        "emoji": "",
        "target_message_id": "W",
    }
    for bad in (
        b'{"reply": "hi"}',
        b'{"reply": {"text": ""}}',
        b'{"reply": {"text": 3}}',
        b'{"reply": {"text": "hi", "colour": "red"}}',
    ):
        with pytest.raises(ValueError, match="reply"):
            reply_of(bad)


def test_backoff_grows_with_jitter_within_bounds() -> None:
    rng = random.Random(1)
    delays = [backoff_delay(n, 0.5, 60, rng) for n in range(1, 12)]
    for n, delay in enumerate(delays, start=1):
        ceiling = min(60, 0.5 * 2 ** (n - 1))
        assert ceiling / 2 <= delay <= ceiling


def test_configuration_defaults_and_errors() -> None:
    config = RelayConfig.from_env({})
    assert (config.port, config.consumer_name, config.timeout_seconds) == (
        9104,
        "webhook-relay",
        10.0,
    )
    assert (
        config.max_attempts,
        config.max_retry_seconds,
        config.permanent_failure_attempts,
        config.max_response_bytes,
        config.outbound.allow_hosts,
    ) == (10, 600.0, 2, 65536, frozenset())
    for env, says in (
        ({"RELAY_GATEWAY_URL": "gateway:8090"}, "RELAY_GATEWAY_URL"),
        ({"RELAY_TIMEOUT_SECONDS": "0"}, "RELAY_TIMEOUT_SECONDS"),
        ({"RELAY_BACKOFF_MAX_SECONDS": "0.1"}, "RELAY_BACKOFF_MAX_SECONDS"),
        ({"RELAY_BOT_BUFFER": "0"}, "RELAY_BOT_BUFFER"),
        ({"RELAY_PORT": "70000"}, "RELAY_PORT"),
        ({"RELAY_MAX_ATTEMPTS": "0"}, "RELAY_MAX_ATTEMPTS"),
        (
            {"RELAY_MAX_ATTEMPTS": "2", "RELAY_PERMANENT_FAILURE_ATTEMPTS": "3"},
            "RELAY_PERMANENT_FAILURE_ATTEMPTS",
        ),
        ({"RELAY_MAX_RESPONSE_BYTES": "100"}, "RELAY_MAX_RESPONSE_BYTES"),
        ({"RELAY_MAX_RETRY_SECONDS": "soon"}, "RELAY_MAX_RETRY_SECONDS"),
        ({"OUTBOUND_ALLOW_HOSTS": "10.0.0.0/33"}, "OUTBOUND_ALLOW_HOSTS"),
    ):
        with pytest.raises(InvalidInputError, match=says):
            RelayConfig.from_env(env)
