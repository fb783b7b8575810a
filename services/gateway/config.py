"""Gateway configuration from the environment (documented in the README, "gateway")."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from services.common.env import env_bool, env_float, env_int, env_port, env_str
from services.common.errors import InvalidInputError
from services.common.media_store import MediaStoreConfig
from services.common.outbound_http import OutboundPolicy
from services.common.sharding import ShardAddresses
from services.common.store import StoreConfig
from services.common.wire import MAX_FRAME_BYTES, MAX_GATEWAY_FRAME_BYTES

#: Room in a request body or frame beyond the base64 media (text, ids, JSON).
_ENVELOPE_BYTES = 128 * 1024


def base64_size(size: int) -> int:
    return 4 * ((size + 2) // 3)


@dataclass(frozen=True)
class GatewayConfig:
    host: str = "127.0.0.1"
    port: int = 8090
    # Shared secret the Node server presents on the WebSocket.
    node_ws_token: str = ""
    # Secret for the bot lifecycle HTTP API.
    api_token: str = ""
    # Only for local experiments: accept unauthenticated peers.
    insecure_no_auth: bool = False
    # The queue_svc shards in shard order (QUEUE_SVC_ADDRESS, comma-separated).
    queue_shards: ShardAddresses = field(default_factory=ShardAddresses)
    node_api_url: str = "http://127.0.0.1:8091"
    node_api_token: str = ""
    metrics_port: int = 9101
    # AddMessages batching: how long the first frame of a batch waits for company. A Node
    # with frame batches sends a turn's frames in one message (they join without waiting),
    # and at saturation batches fill while the previous call is out: 2 ms only added
    # latency (p50 10.6-11.2 → 6.0-6.6 ms at 1,000 msg/s with 0.5 ms, load average 5; the
    # same CPU per message at saturation).
    batch_window_seconds: float = 0.0005
    # At saturation every batch is full, and queue_svc's store writes a batch in one
    # transaction: 512 rows cost about a quarter less CPU per message than 256 (SQLite
    # dirties an index page per correspondent either way). Larger would hold queue_svc's
    # event loop longer per call.
    batch_max_messages: int = 512
    rpc_timeout_seconds: float = 10.0
    # How long an outgoing reply waits for Node's acknowledgement.
    outgoing_ack_timeout_seconds: float = 15.0
    # The largest WebSocket message read at all; larger frames than the wire limit but
    # smaller than this get a REJECTED ack, larger ones close the socket (code 1009).
    ws_max_message_bytes: int = 4 * 1024 * 1024
    # Repeated log lines (RETRY, rejections) are summarised once per this interval.
    log_summary_seconds: float = 10.0
    # How long /readyz waits for each dependency.
    ready_timeout_seconds: float = 1.0
    # Webhook URLs are checked against it when configured (OUTBOUND_ALLOW_HOSTS); an
    # operator's retry of a webhook dead letter posts within this time, reading at most
    # this much of the answer.
    outbound: OutboundPolicy = field(default_factory=OutboundPolicy)
    webhook_timeout_seconds: float = 10.0
    webhook_max_response_bytes: int = 65536
    # The largest media file a bot may send (fetched from a URL or inline base64).
    outgoing_media_max_bytes: int = 16 * 1024 * 1024
    # The whole time a media URL may take (connect, redirects, body).
    outgoing_media_timeout_seconds: float = 30.0
    # How often the store is scanned for pending outgoing messages (accepted by another
    # replica, or before a restart); local sends and Node connections wake it at once.
    outbox_scan_seconds: float = 1.0
    # How long the delivery waits for Node's result of one message before it moves on
    # (the message stays pending and is streamed again).
    outbox_result_timeout_seconds: float = 60.0
    # The operator console (/console): media_svc replicas asked for pool figures and
    # requeues, how long a sign-in lasts, whether its cookie is Secure (behind HTTPS), and
    # how often its live parts are refreshed.
    media_svc_addresses: tuple[str, ...] = ("127.0.0.1:50052",)
    media_svc_metrics_urls: tuple[str, ...] = ("http://127.0.0.1:9103/metrics",)
    console_session_seconds: float = 8 * 3600.0
    console_secure_cookie: bool = False
    console_refresh_seconds: float = 1.0
    store: StoreConfig = field(default_factory=StoreConfig)
    # Where Node stages the bytes of incoming media (MEDIA_STORE, MEDIA_STAGING_DIR), and
    # the largest it may stage (MAX_MEDIA_BYTES, the value Node caps downloads at).
    media: MediaStoreConfig = field(default_factory=MediaStoreConfig)
    max_media_bytes: int = 100 * 1024 * 1024

    @property
    def max_request_bytes(self) -> int:
        """The largest HTTP body: a message with inline base64 media at the cap."""
        return base64_size(self.outgoing_media_max_bytes) + _ENVELOPE_BYTES

    def __post_init__(self) -> None:
        if self.ws_max_message_bytes <= MAX_FRAME_BYTES:
            raise InvalidInputError(
                f"GATEWAY_WS_MAX_MESSAGE_BYTES must exceed the frame limit {MAX_FRAME_BYTES}, "
                f"so an oversized frame can still be answered; got {self.ws_max_message_bytes}"
            )
        if not self.insecure_no_auth and not (self.node_ws_token and self.api_token):
            raise InvalidInputError(
                "GATEWAY_TOKEN and GATEWAY_API_TOKEN must be set (long random strings); "
                "set GATEWAY_INSECURE_NO_AUTH=1 only for local experiments"
            )
        if self.max_request_bytes > MAX_GATEWAY_FRAME_BYTES:
            raise InvalidInputError(
                f"GATEWAY_OUTGOING_MEDIA_MAX_BYTES={self.outgoing_media_max_bytes} does not fit"
                f" in a {MAX_GATEWAY_FRAME_BYTES}-byte frame to Node as base64; lower it"
            )
        if not 0 <= self.port <= 65535:
            raise InvalidInputError(f"GATEWAY_PORT must be 0..65535, got {self.port}")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> GatewayConfig:
        env = os.environ if env is None else env
        return cls(
            host=env_str(env, "GATEWAY_HOST", "127.0.0.1"),
            port=env_port(env, "GATEWAY_PORT", 8090),
            node_ws_token=env.get("GATEWAY_TOKEN", ""),
            api_token=env.get("GATEWAY_API_TOKEN", ""),
            insecure_no_auth=env_bool(env, "GATEWAY_INSECURE_NO_AUTH", False),
            queue_shards=ShardAddresses.from_env(env),
            node_api_url=env_str(env, "NODE_API_URL", "http://127.0.0.1:8091").rstrip("/"),
            node_api_token=env.get("NODE_API_TOKEN", ""),
            metrics_port=env_port(env, "GATEWAY_METRICS_PORT", 9101),
            batch_window_seconds=env_float(env, "GATEWAY_BATCH_WINDOW_SECONDS", 0.0005),
            batch_max_messages=env_int(env, "GATEWAY_BATCH_MAX_MESSAGES", 512, minimum=1),
            rpc_timeout_seconds=env_float(env, "GATEWAY_RPC_TIMEOUT_SECONDS", 10.0),
            outgoing_ack_timeout_seconds=env_float(
                env, "GATEWAY_OUTGOING_ACK_TIMEOUT_SECONDS", 15.0
            ),
            ws_max_message_bytes=env_int(
                env, "GATEWAY_WS_MAX_MESSAGE_BYTES", 4 * 1024 * 1024, minimum=1
            ),
            log_summary_seconds=env_float(env, "GATEWAY_LOG_SUMMARY_SECONDS", 10.0),
            ready_timeout_seconds=env_float(env, "GATEWAY_READY_TIMEOUT_SECONDS", 1.0),
            outbound=OutboundPolicy.from_env(env),
            webhook_timeout_seconds=env_float(env, "GATEWAY_WEBHOOK_TIMEOUT_SECONDS", 10.0),
            webhook_max_response_bytes=env_int(
                env, "GATEWAY_WEBHOOK_MAX_RESPONSE_BYTES", 65536, minimum=1024
            ),
            outgoing_media_max_bytes=env_int(
                env, "GATEWAY_OUTGOING_MEDIA_MAX_BYTES", 16 * 1024 * 1024, minimum=1
            ),
            outgoing_media_timeout_seconds=env_float(
                env, "GATEWAY_OUTGOING_MEDIA_TIMEOUT_SECONDS", 30.0
            ),
            outbox_scan_seconds=env_float(env, "GATEWAY_OUTBOX_SCAN_SECONDS", 1.0),
            outbox_result_timeout_seconds=env_float(
                env, "GATEWAY_OUTBOX_RESULT_TIMEOUT_SECONDS", 60.0
            ),
            media_svc_addresses=tuple(
                a.strip()
                for a in env_str(env, "GATEWAY_MEDIA_SVC_ADDRESSES", "127.0.0.1:50052").split(",")
                if a.strip()
            ),
            media_svc_metrics_urls=tuple(
                u.strip()
                for u in env_str(
                    env, "GATEWAY_MEDIA_SVC_METRICS_URLS", "http://127.0.0.1:9103/metrics"
                ).split(",")
                if u.strip()
            ),
            console_session_seconds=env_float(
                env, "GATEWAY_CONSOLE_SESSION_SECONDS", 8 * 3600.0, minimum=60.0
            ),
            console_secure_cookie=env_bool(env, "GATEWAY_CONSOLE_SECURE_COOKIE", False),
            console_refresh_seconds=env_float(
                env, "GATEWAY_CONSOLE_REFRESH_SECONDS", 1.0, minimum=0.1
            ),
            store=StoreConfig.from_env(env),
            media=MediaStoreConfig.from_env(env),
            max_media_bytes=env_int(env, "MAX_MEDIA_BYTES", 100 * 1024 * 1024, minimum=1),
        )
