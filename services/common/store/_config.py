"""Which store to open, from the environment (documented in the README, "Storage")."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from services.common.errors import InvalidInputError

Backend = Literal["sqlite", "mongodb"]
Synchronous = Literal["NORMAL", "FULL"]

DEFAULT_SQLITE_PATH = Path("./var/chatbot.sqlite3")
DEFAULT_MONGODB_DATABASE = "chatbot"


@dataclass(frozen=True, slots=True)
class StoreConfig:
    backend: Backend = "sqlite"
    sqlite_path: Path = DEFAULT_SQLITE_PATH
    mongodb_uri: str | None = None
    mongodb_database: str = DEFAULT_MONGODB_DATABASE
    # How long a write waits for another process holding the SQLite write lock.
    sqlite_busy_timeout_ms: int = 5_000
    # WAL + NORMAL survives a process crash (not a power cut); FULL fsyncs every commit.
    sqlite_synchronous: Synchronous = "NORMAL"

    def __post_init__(self) -> None:
        if self.backend not in ("sqlite", "mongodb"):
            raise InvalidInputError(
                f"STORE_BACKEND must be 'sqlite' or 'mongodb', got {self.backend!r}"
            )
        if self.backend == "mongodb" and not self.mongodb_uri:
            raise InvalidInputError(
                "STORE_BACKEND=mongodb needs MONGODB_URI (e.g. mongodb://host:27017/?replicaSet=rs0)"
            )
        if not self.mongodb_database:
            raise InvalidInputError("MONGODB_DATABASE must not be empty")
        if self.sqlite_busy_timeout_ms < 0:
            raise InvalidInputError("SQLITE_BUSY_TIMEOUT_MS must be >= 0 (milliseconds)")
        if self.sqlite_synchronous not in ("NORMAL", "FULL"):
            raise InvalidInputError(
                f"SQLITE_SYNCHRONOUS must be NORMAL or FULL, got {self.sqlite_synchronous!r}"
            )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> StoreConfig:
        """STORE_BACKEND defaults to mongodb when MONGODB_URI is set, else sqlite."""
        env = os.environ if env is None else env
        uri = env.get("MONGODB_URI") or None
        backend = env.get("STORE_BACKEND", "").strip().lower() or ("mongodb" if uri else "sqlite")
        timeout_text = env.get("SQLITE_BUSY_TIMEOUT_MS", "5000")
        try:
            timeout = int(timeout_text)
        except ValueError:
            raise InvalidInputError(
                f"SQLITE_BUSY_TIMEOUT_MS must be an integer (milliseconds), got {timeout_text!r}"
            ) from None
        return cls(
            backend=backend,  # type: ignore[arg-type]  # checked in __post_init__
            sqlite_path=Path(env.get("SQLITE_PATH") or DEFAULT_SQLITE_PATH),
            mongodb_uri=uri,
            mongodb_database=env.get("MONGODB_DATABASE") or DEFAULT_MONGODB_DATABASE,
            sqlite_busy_timeout_ms=timeout,
            sqlite_synchronous=env.get("SQLITE_SYNCHRONOUS", "NORMAL").upper(),  # type: ignore[arg-type]
        )
