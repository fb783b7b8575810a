"""Which legs of the store contract suite ran, reported once at the end of the session
(tests/conftest.py), also when pytest-xdist spreads the tests over workers."""

from __future__ import annotations

import os

import pytest

LEGS = ("sqlite", "mongodb-secantus-replset", "mongodb-secantus-standalone", "mongodb-uri")
# The MONGODB_URI leg is collected only when it is set (not one skip per test).
COLLECTED_LEGS = LEGS if os.environ.get("MONGODB_URI") else LEGS[:-1]
LEG_STATUS = pytest.StashKey[dict[str, str]]()
NO_MONGO = "MONGODB_URI not set"
