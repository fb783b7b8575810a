"""`python -m services.gateway`: the Node WebSocket and the bot lifecycle API."""

from services.common.entrypoint import run_service
from services.gateway.config import GatewayConfig
from services.gateway.server import serve

if __name__ == "__main__":
    run_service("gateway", GatewayConfig.from_env, serve)
