"""StoreConfig.from_env: which adapter, with what defaults, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.common.errors import InvalidInputError
from services.common.store import Store, StoreConfig, open_store
from services.common.store.sqlite import SqliteStore


def test_defaults_to_sqlite_without_a_mongodb_uri() -> None:
    config = StoreConfig.from_env({})
    assert config.backend == "sqlite"
    assert config.sqlite_path == Path("var/chatbot.sqlite3")
    assert config.sqlite_synchronous == "NORMAL"
    assert config.mongodb_database == "chatbot"


def test_a_mongodb_uri_selects_mongodb_unless_overridden() -> None:
    uri = "mongodb://db:27017/?replicaSet=rs0"
    assert StoreConfig.from_env({"MONGODB_URI": uri}).backend == "mongodb"
    forced = StoreConfig.from_env({"MONGODB_URI": uri, "STORE_BACKEND": "sqlite"})
    assert forced.backend == "sqlite"
    named = StoreConfig.from_env({"MONGODB_URI": uri, "MONGODB_DATABASE": "prod"})
    assert (named.mongodb_uri, named.mongodb_database) == (uri, "prod")


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"STORE_BACKEND": "postgres"}, "STORE_BACKEND"),
        ({"STORE_BACKEND": "mongodb"}, "MONGODB_URI"),
        ({"SQLITE_BUSY_TIMEOUT_MS": "soon"}, "SQLITE_BUSY_TIMEOUT_MS"),
        ({"SQLITE_SYNCHRONOUS": "OFF"}, "SQLITE_SYNCHRONOUS"),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(InvalidInputError, match=named):
        StoreConfig.from_env(env)


async def test_open_store_creates_parent_directories_and_wal(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "dir" / "chatbot.sqlite3"
    store: Store = await open_store(StoreConfig.from_env({"SQLITE_PATH": str(path)}))
    try:
        assert isinstance(store, SqliteStore)
        assert isinstance(store, Store)
        assert path.exists()
        assert (tmp_path / "deep" / "dir" / "chatbot.sqlite3-wal").exists()
    finally:
        await store.close()
