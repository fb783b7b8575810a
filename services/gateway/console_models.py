"""The answers of the JSON routes behind the operator console (overview_api.py,
media_api.py) as pydantic models, for the published OpenAPI document (api_models.py holds
the rest of the API's bodies)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

# Answers may grow fields without breaking a client that reads them.
_ANSWER = ConfigDict(extra="allow")


class SessionSeen(BaseModel):
    model_config = _ANSWER
    state: str = Field(description="OPEN, QR_REQUIRED, CONNECTING, LOGGED_OUT, … or UNKNOWN.")
    detail: str | None
    updated_at: str | None


class Quota(BaseModel):
    model_config = _ANSWER
    used_bytes: int = Field(description="Bytes staged for the bot's media jobs in flight.")
    quota_bytes: int


class WebhookState(BaseModel):
    model_config = _ANSWER
    state: str = Field(description="off, ok, or failing (it has dead letters).")
    url: str | None
    dead_letters: int = Field(description="Counted up to 100.")


class BotOverview(BaseModel):
    model_config = _ANSWER
    bot_id: str
    session: SessionSeen
    active: bool = Field(description="In the registry of active bots (its queue started).")
    phone: str | None = Field(description="The number, when the bot id is a phone JID.")
    quota: Quota
    messages_today: int = Field(description="Since midnight UTC (up to 1000 per chat).")
    media_in_flight: int
    media_held: int = Field(description="Jobs parked while the bot is stopped.")
    webhook: WebhookState


class BotList(BaseModel):
    model_config = _ANSWER
    bots: list[BotOverview]


class ReceivedMessage(BaseModel):
    model_config = _ANSWER
    sequence: int | None
    correspondent_id: str
    sender: str
    source: str
    time: str | None
    kind: str = Field(description="text, or the media kind (voice_note, image, …).")
    mime_type: str | None
    content: str
    group_name: str | None
    details: Any = Field(description="The message's typed details (JSON), if any.")


class MediaInFlight(BaseModel):
    model_config = _ANSWER
    media_processing_id: str
    correspondent_id: str
    kind: str
    mime_type: str
    caption: str
    time: str | None
    state: str = Field(description="pending, processing, completed (resolving), or held.")
    attempts: int
    pool: str


class ReplySent(BaseModel):
    model_config = _ANSWER
    bot_id: str
    idempotency_key: str
    correspondent_id: str
    type: str
    status: str = Field(description="pending, sent or failed (WhatsApp's answer).")
    provider_message_id: str | None
    reason: str | None
    created_at: str
    updated_at: str
    text: str | None = Field(description="Kept only until the message is sent.")


class Conversation(BaseModel):
    model_config = _ANSWER
    bot_id: str
    messages: list[ReceivedMessage] = Field(description="Oldest first.")
    in_flight: list[MediaInFlight]
    replies: list[ReplySent] = Field(description="Newest first.")


class ReplicaInFlight(BaseModel):
    model_config = _ANSWER
    replica: str
    in_flight: int
    concurrency: int


class ReplicaRate(BaseModel):
    model_config = _ANSWER
    replica: str = Field(description="The replica's metrics URL.")
    jobs_per_minute: float = Field(description="Jobs finished (delivered or failed).")
    failure_rate: float | None = Field(description="Failed of finished; null: none finished.")
    window_seconds: float = Field(description="Since the first sample of the window.")


class PoolFigures(BaseModel):
    model_config = _ANSWER
    pool: str
    processor: str | None
    pending: int
    processing: int
    oldest_pending_age_seconds: float
    failed: int = Field(description="Dead-lettered jobs of the pool (up to 1000 counted).")
    failed_last_hour: int
    replicas: list[ReplicaInFlight]
    rates: list[ReplicaRate] = Field(
        description="Per replica, over the last 5 minutes the pools were read."
    )


class Definitions(BaseModel):
    model_config = _ANSWER
    validation: str = Field(description="valid, missing, or invalid: <the first defect>.")
    document: dict[str, Any] | None


class Pools(BaseModel):
    model_config = _ANSWER
    pools: list[PoolFigures]
    problems: list[str] = Field(
        description="media_svc replicas whose statistics or metrics could not be read."
    )
    definitions: Definitions


class FailedJob(BaseModel):
    model_config = _ANSWER
    media_processing_id: str
    bot_id: str
    correspondent_id: str
    kind: str
    mime_type: str
    pool: str
    attempts: int
    reason: str
    failed_at: str | None
    age_seconds: float


class FailedJobs(BaseModel):
    model_config = _ANSWER
    failed_jobs: list[FailedJob] = Field(description="Newest first.")


class Requeued(BaseModel):
    model_config = _ANSWER
    media_processing_id: str
    requeued_into: str = Field(description="active, or holding for a stopped bot.")


class FailedJobDeleted(BaseModel):
    model_config = _ANSWER
    media_processing_id: str
    deleted: bool
