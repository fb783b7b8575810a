"""`python -m services.media_svc`: the media processing service (env: see README)."""

import asyncio
import logging
import os
import sys

from services.common.errors import InvalidInputError
from services.media_svc.config import MediaConfig
from services.media_svc.server import serve


def main() -> None:
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    try:
        config = MediaConfig.from_env()
    except InvalidInputError as exc:
        sys.exit(f"media_svc: configuration error: {exc}")
    asyncio.run(serve(config))


if __name__ == "__main__":
    main()
