"""One async storage interface (a Protocol per aggregate, `Store` their union); SQLite
(embedded default) and MongoDB (production) adapters.

from services.common.store import open_store, StoreConfig
store = await open_store(StoreConfig.from_env())
"""

from services.common.store._config import StoreConfig
from services.common.store._interface import (
    BotConfigStore,
    DefinitionsStore,
    LeaseStore,
    MediaJobStore,
    MessageStore,
    OutboxStore,
    Store,
)
from services.common.store._message_types import (
    AppendResult,
    MessageFields,
    StoredMessage,
    message_fields,
)
from services.common.store._open import open_store
from services.common.store._outbox_types import NewOutgoing, OutboxStatus, OutgoingRecord
from services.common.store._types import (
    ACTIVE_BOTS_DOCUMENT_ID,
    DEFAULT_MAX_AGE_SECONDS,
    DEFAULT_MAX_CHARACTERS,
    DEFAULT_MAX_MESSAGE_CHARACTERS,
    DEFAULT_MAX_MESSAGES,
    BotConfig,
    ClaimedJob,
    JobCollection,
    JobStatus,
    MediaJob,
    NewMediaJob,
    PoolDepth,
    truncate_to_millis,
)

__all__ = [
    "ACTIVE_BOTS_DOCUMENT_ID",
    "DEFAULT_MAX_AGE_SECONDS",
    "DEFAULT_MAX_CHARACTERS",
    "DEFAULT_MAX_MESSAGES",
    "DEFAULT_MAX_MESSAGE_CHARACTERS",
    "AppendResult",
    "BotConfig",
    "BotConfigStore",
    "ClaimedJob",
    "DefinitionsStore",
    "JobCollection",
    "JobStatus",
    "LeaseStore",
    "MediaJob",
    "MediaJobStore",
    "MessageFields",
    "MessageStore",
    "NewMediaJob",
    "NewOutgoing",
    "OutboxStatus",
    "OutboxStore",
    "OutgoingRecord",
    "PoolDepth",
    "Store",
    "StoreConfig",
    "StoredMessage",
    "message_fields",
    "open_store",
    "truncate_to_millis",
]
