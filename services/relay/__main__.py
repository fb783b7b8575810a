"""`python -m services.relay`: the webhook relay (Subscribe → per-bot webhook POSTs)."""

from services.common.entrypoint import run_service
from services.relay.config import RelayConfig
from services.relay.server import serve

if __name__ == "__main__":
    run_service("relay", RelayConfig.from_env, serve)
