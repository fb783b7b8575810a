"""A media job's expected processing time, fixed when the job is created (queue_svc) and
when it is re-routed to another pool (media_svc): the store claims a pool's jobs in order
of arrival + this estimate (`claim_at`).

The estimate is the staged file's size times the pool's processing seconds per MiB.
The size is the one measure of the work that queue_svc knows for every job (only media_svc
reads the staged file, and the wire carries no duration), and it cannot be forged: it is
what Node actually wrote. For one codec it grows with the duration of audio and video,
and with the pages of a document or the pixels of an image closely enough to tell a
100 s voice note from a 5 s one, which is what the order needs.

Ordering by arrival + expected cost is shortest-job-first with aging: a short job that
arrives while a long one's estimate runs goes first, and every job arriving after the
long one's `claim_at` ranks behind it, so the long one waits at most its own estimate
plus what arrived before that instant (no starvation), and the key never changes, so
both stores index it.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from services.common.routing import PoolDefinition
from services.common.store import claim_delay_for_size

# Rough processing seconds per MiB for the bundled engines on one core: a WhatsApp voice
# note is Opus at about 16 kbit/s, so a MiB is about 9 minutes of speech; video bytes are
# mostly picture, whose sound track and a few key frames are read; a MiB of photo is one
# or two pictures to read. Only each pool's own value matters to its order (a pool sets
# `seconds_per_mib` to override it); a processor not listed (corrupt, unsupported, stub)
# costs nothing and keeps arrival order.
SECONDS_PER_MIB: Mapping[str, float] = MappingProxyType(
    {"audio": 60.0, "video": 4.0, "image": 4.0, "sticker": 4.0, "document": 10.0}
)


def seconds_per_mib(pool: PoolDefinition) -> float:
    """The pool's processing seconds per MiB: its own `seconds_per_mib`, else its
    processor's built-in estimate."""
    if pool.seconds_per_mib is not None:
        return pool.seconds_per_mib
    return SECONDS_PER_MIB.get(pool.processor, 0.0)


def claim_delay_ms(pool: PoolDefinition, file_size: int) -> int:
    """How much later than its arrival a job of `file_size` bytes in `pool` is claimed
    (the store computes the same for a job re-routed to `pool`)."""
    return claim_delay_for_size(file_size, seconds_per_mib(pool))
