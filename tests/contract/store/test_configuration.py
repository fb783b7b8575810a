"""Bot configuration, processor definitions and the cleanup lease, on every leg."""

from __future__ import annotations

import asyncio

import pytest

from services.common.errors import InvalidInputError
from services.common.store import (
    ACTIVE_BOTS_DOCUMENT_ID,
    BotConfig,
    Store,
    StoreConfig,
    open_store,
)


async def test_bot_config_round_trip_and_upsert(store: Store) -> None:
    assert await store.get_bot_config("bot-1") is None
    config = BotConfig(
        bot_id="bot-1",
        max_messages=50,
        media_storage_quota_gb=2.5,
        extra={"reply_service": {"url": "http://localhost:9000"}, "language": "de"},
    )
    await store.put_bot_config(config)
    assert await store.get_bot_config("bot-1") == config
    assert await store.get_bot_config("bot-2") is None

    changed = BotConfig(bot_id="bot-1", max_messages=80)
    await store.put_bot_config(changed)
    assert await store.get_bot_config("bot-1") == changed


async def test_configured_bots_lists_every_bot_with_a_configuration_and_nothing_else(
    store: Store,
) -> None:
    assert await store.configured_bots() == []
    # The documents that share the collection (definitions, the registry) are not bots.
    await store.seed_processor_definitions({"version": 1})
    await store.set_bot_active("bot-running", True)
    for bot_id in ("bot-b", "bot-a"):
        await store.put_bot_config(BotConfig(bot_id=bot_id))
    await store.put_bot_config(BotConfig(bot_id="bot-a", max_messages=7))
    assert await store.configured_bots() == ["bot-a", "bot-b"]


def test_bot_config_rejects_invalid_values_naming_the_key() -> None:
    assert BotConfig.from_document({"_id": "b"}) == BotConfig(bot_id="b")
    with pytest.raises(InvalidInputError, match="max_messages"):
        BotConfig.from_document({"bot_id": "b", "max_messages": "many"})
    with pytest.raises(InvalidInputError, match="media_storage_quota_gb"):
        BotConfig.from_document({"bot_id": "b", "media_storage_quota_gb": -1})
    with pytest.raises(InvalidInputError, match="bot_id"):
        BotConfig.from_document({"max_messages": 5})
    with pytest.raises(InvalidInputError, match="max_characters"):
        BotConfig(bot_id="b", max_characters=0)
    for transcription in ({"engine": "cloud"}, "remote", {"engine": "local", "url": "x"}):
        with pytest.raises(InvalidInputError, match="transcription"):
            BotConfig.from_document({"bot_id": "b", "transcription": transcription})
    remote = BotConfig.from_document({"bot_id": "b", "transcription": {"engine": "remote"}})
    assert remote.extra == {"transcription": {"engine": "remote"}}


def test_message_settings_have_documented_defaults_and_refuse_non_booleans() -> None:
    config = BotConfig.from_document({"bot_id": "b"})
    assert config.message_settings() == {
        "groups": True,
        "status": False,
        "newsletters": False,
        "owner_messages": True,
        "group_events": False,
    }
    changed = BotConfig.from_document({"bot_id": "b", "group_events": True, "groups": False})
    assert (changed.group_events, changed.groups) == (True, False)
    assert BotConfig.from_document(changed.to_document()) == changed
    for key in ("groups", "status", "newsletters", "owner_messages", "group_events"):
        with pytest.raises(InvalidInputError, match=key):
            BotConfig.from_document({"bot_id": "b", key: "true"})


async def test_processor_definitions_seed_once_then_put_overwrites(store: Store) -> None:
    assert await store.get_processor_definitions() is None
    defaults = {"pools": [{"name": "image", "size": 2}], "version": 1}
    assert await store.seed_processor_definitions(defaults) is True
    assert await store.seed_processor_definitions({"pools": [], "version": 99}) is False
    assert await store.get_processor_definitions() == defaults

    edited = {"pools": [{"name": "image", "size": 4}], "version": 2}
    await store.put_processor_definitions(edited)
    assert await store.get_processor_definitions() == edited
    assert await store.seed_processor_definitions(defaults) is False
    assert await store.get_processor_definitions() == edited
    # It shares bot_configurations with the bots but is not one.
    assert await store.get_bot_config("_mediaProcessorDefinitions") is None


async def test_active_bot_registry_adds_and_removes_one_bot_at_a_time(store: Store) -> None:
    assert await store.active_bots() == []
    assert await store.set_bot_active("bot-b", False) is False  # nothing to remove
    assert await store.set_bot_active("bot-b", True) is True
    assert await store.set_bot_active("bot-a", True) is True
    assert await store.set_bot_active("bot-a", True) is False  # already there
    assert await store.active_bots() == ["bot-a", "bot-b"]
    assert await store.set_bot_active("bot-b", False) is True
    assert await store.set_bot_active("bot-b", False) is False
    assert await store.active_bots() == ["bot-a"]
    with pytest.raises(InvalidInputError, match="bot_id"):
        await store.set_bot_active("", True)
    # The registry shares bot_configurations with the bots but is not one, and the bot
    # API cannot overwrite it.
    assert await store.get_bot_config(ACTIVE_BOTS_DOCUMENT_ID) is None
    with pytest.raises(InvalidInputError, match="reserved"):
        await store.put_bot_config(BotConfig(bot_id=ACTIVE_BOTS_DOCUMENT_ID))
    assert await store.active_bots() == ["bot-a"]


async def test_lease_is_exclusive_renewable_and_expires(store: Store) -> None:
    assert await store.acquire_lease("cleanup", "replica-a", 0.3) is True
    assert await store.acquire_lease("cleanup", "replica-b", 0.3) is False
    # The holder renews; another lease name is independent.
    assert await store.acquire_lease("cleanup", "replica-a", 0.3) is True
    assert await store.acquire_lease("other", "replica-b", 0.3) is True

    # Releasing someone else's lease changes nothing.
    await store.release_lease("cleanup", "replica-b")
    assert await store.acquire_lease("cleanup", "replica-b", 0.3) is False

    await asyncio.sleep(0.45)
    assert await store.acquire_lease("cleanup", "replica-b", 30) is True
    assert await store.acquire_lease("cleanup", "replica-a", 30) is False

    await store.release_lease("cleanup", "replica-b")
    assert await store.acquire_lease("cleanup", "replica-a", 30) is True


async def test_lease_holders_lists_live_leases_by_prefix(store: Store) -> None:
    assert await store.lease_holders("node-member:") == {}
    await store.acquire_lease("node-member:node-0", "http://node-0:8091", 30)
    await store.acquire_lease("node-member:node-1", "http://node-1:8091", 0.2)
    await store.acquire_lease("whatsapp-session:bot-a", "node-0", 30)
    # A prefix is literal text, never a pattern.
    await store.acquire_lease("node_member_x", "not a member", 30)
    assert await store.lease_holders("node-member:") == {
        "node-member:node-0": "http://node-0:8091",
        "node-member:node-1": "http://node-1:8091",
    }
    await asyncio.sleep(0.3)
    assert await store.lease_holders("node-member:") == {
        "node-member:node-0": "http://node-0:8091"
    }, "an expired lease is no longer held"
    assert await store.lease_holders("whatsapp-session:") == {"whatsapp-session:bot-a": "node-0"}
    assert await store.lease_holders("node.member") == {}


async def test_lease_rejects_non_positive_ttl(store: Store) -> None:
    with pytest.raises(InvalidInputError, match="ttl_seconds"):
        await store.acquire_lease("cleanup", "replica-a", 0)
    assert await store.acquire_lease("cleanup", "replica-b", 30) is True


async def test_data_survives_close_and_reopen(store_config: StoreConfig) -> None:
    first = await open_store(store_config)
    await first.put_bot_config(BotConfig(bot_id="durable", max_messages=12))
    await first.close()
    await first.close()  # idempotent

    second = await open_store(store_config)  # schema creation is idempotent
    try:
        config = await second.get_bot_config("durable")
        assert config is not None
        assert config.max_messages == 12
    finally:
        await second.close()


async def test_webhook_settings_round_trip_and_are_validated(store: Store) -> None:
    config = BotConfig(
        bot_id="bot-w", webhook_url="http://127.0.0.1:9/hook", webhook_secret="s" * 16
    )
    await store.put_bot_config(config)
    assert await store.get_bot_config("bot-w") == config
    for doc, says in (
        ({"webhook_url": "ftp://example.org/x", "webhook_secret": "s" * 16}, "webhook_url"),
        ({"webhook_url": "https://example.org/hook"}, "webhook_secret"),
        ({"webhook_url": "https://example.org/hook", "webhook_secret": "short"}, "16"),
        ({"webhook_secret": "s" * 16}, "without webhook_url"),
    ):
        with pytest.raises(InvalidInputError, match=says):
            BotConfig.from_document({"bot_id": "bot-w", **doc})
    assert await store.get_bot_config("bot-w") == config
