import asyncio
import logging
import os

from services.gateway.config import GatewayConfig
from services.gateway.server import serve

logging.basicConfig(
    level=os.environ.get("LOG_LEVEL", "INFO"),
    format="%(asctime)s %(levelname)s %(name)s %(message)s",
)
asyncio.run(serve(GatewayConfig.from_env()))
