"""MEDIA_STORE from the environment: filesystem by default, gridfs only with the MongoDB
store, anything else refused at start with the variable named."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.common.errors import InvalidInputError
from services.common.media_store import MediaStoreConfig


def test_the_default_is_the_staging_directory() -> None:
    config = MediaStoreConfig.from_env({})
    assert (config.kind, config.staging_dir) == ("filesystem", Path("./var/staging"))
    custom = MediaStoreConfig.from_env({"MEDIA_STAGING_DIR": "/srv/staging"})
    assert custom.staging_dir == Path("/srv/staging")


def test_gridfs_needs_the_mongodb_store() -> None:
    with pytest.raises(InvalidInputError, match="MONGODB_URI"):
        MediaStoreConfig.from_env({"MEDIA_STORE": "gridfs"})
    env = {"MEDIA_STORE": "GridFS", "MONGODB_URI": "mongodb://db:27017/?replicaSet=rs0"}
    assert MediaStoreConfig.from_env(env).kind == "gridfs"


def test_an_unknown_backend_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="MEDIA_STORE"):
        MediaStoreConfig.from_env({"MEDIA_STORE": "s3"})
