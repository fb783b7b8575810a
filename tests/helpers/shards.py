"""Bot ids chosen by the shard map, so a test knows which queue_svc shard serves each."""

from __future__ import annotations

from itertools import count

from services.common.sharding import shard_of


def bot_on_shard(index: int, shard_count: int, prefix: str = "bot") -> str:
    """The first id `<prefix>-<n>` that the map puts on shard `index`."""
    return next(
        bot_id for n in count() if shard_of(bot_id := f"{prefix}-{n}", shard_count) == index
    )
