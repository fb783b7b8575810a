"""`python -m services.gateway`: the Node WebSocket and the bot lifecycle API."""

import logging
import os

from services.common.entrypoint import run_service
from services.gateway.config import GatewayConfig
from services.gateway.server import serve

if __name__ == "__main__":
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    run_service("gateway", GatewayConfig.from_env, serve)
