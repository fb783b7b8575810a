"""One async storage interface (a Protocol per aggregate, `Store` their union); SQLite
(embedded default) and MongoDB (production) adapters.

from services.common.store import open_store, StoreConfig
store = await open_store(StoreConfig.from_env())
"""

from services.common.store._api_tokens import ApiToken
from services.common.store._config import StoreConfig
from services.common.store._dead_letters import (
    WebhookDeadLetter,
    WebhookDeadLetterStore,
    bounded_reason,
)
from services.common.store._identity_types import (
    LID_SUFFIX,
    PHONE_SUFFIX,
    IdentityPair,
    KnownIdentity,
    distinct_pairs,
)
from services.common.store._interface import (
    ApiTokenStore,
    BotConfigStore,
    DefinitionsStore,
    IdentityStore,
    LeaseStore,
    MediaJobStore,
    MediaUsageStore,
    MessageStore,
    OutboxStore,
    Store,
    WhatsAppAuthStore,
)
from services.common.store._media_usage import check_usage_change
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
    MAX_CLAIM_DELAY_MS,
    BotConfig,
    CheckpointOutcome,
    ClaimedJob,
    JobCollection,
    JobStatus,
    MediaJob,
    NewMediaJob,
    PoolDepth,
    claim_delay_for_size,
    truncate_to_millis,
)

__all__ = [
    "ACTIVE_BOTS_DOCUMENT_ID",
    "DEFAULT_MAX_AGE_SECONDS",
    "DEFAULT_MAX_CHARACTERS",
    "DEFAULT_MAX_MESSAGES",
    "DEFAULT_MAX_MESSAGE_CHARACTERS",
    "LID_SUFFIX",
    "MAX_CLAIM_DELAY_MS",
    "PHONE_SUFFIX",
    "ApiToken",
    "ApiTokenStore",
    "AppendResult",
    "BotConfig",
    "BotConfigStore",
    "CheckpointOutcome",
    "ClaimedJob",
    "DefinitionsStore",
    "IdentityPair",
    "IdentityStore",
    "JobCollection",
    "JobStatus",
    "KnownIdentity",
    "LeaseStore",
    "MediaJob",
    "MediaJobStore",
    "MediaUsageStore",
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
    "WebhookDeadLetter",
    "WebhookDeadLetterStore",
    "WhatsAppAuthStore",
    "bounded_reason",
    "check_usage_change",
    "claim_delay_for_size",
    "distinct_pairs",
    "message_fields",
    "open_store",
    "truncate_to_millis",
]
