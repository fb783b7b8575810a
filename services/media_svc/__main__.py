"""`python -m services.media_svc`: the media processing service (env: see README)."""

import logging
import os

from services.common.entrypoint import run_service
from services.media_svc.config import MediaConfig
from services.media_svc.server import serve


def main() -> None:
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    run_service("media_svc", MediaConfig.from_env, serve)


if __name__ == "__main__":
    main()
