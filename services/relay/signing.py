"""The webhook signature: HMAC-SHA256 with the bot's secret over `<timestamp>.<body>`.

A receiver recomputes it from the raw body and the X-Chatbot-Timestamp header, compares
in constant time, and refuses timestamps too far from its clock (replay protection).
"""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "X-Chatbot-Signature"
TIMESTAMP_HEADER = "X-Chatbot-Timestamp"
IDEMPOTENCY_HEADER = "Idempotency-Key"
ATTEMPT_HEADER = "X-Chatbot-Delivery-Attempt"


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """`sha256=<hex>`, the value of X-Chatbot-Signature."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def verify(
    secret: str,
    timestamp_header: str,
    body: bytes,
    signature_header: str,
    now: float,
    tolerance: float = 300,
) -> bool:
    """What a receiver does (tests use it too)."""
    try:
        timestamp = int(timestamp_header)
    except ValueError:
        return False
    if abs(now - timestamp) > tolerance:
        return False
    return hmac.compare_digest(signature(secret, timestamp, body), signature_header)
