"""`python -m services.queue_svc`: the queue service, configured from the environment."""

from services.common.entrypoint import run_service
from services.queue_svc.config import Config
from services.queue_svc.server import serve

if __name__ == "__main__":
    run_service("queue_svc", Config.from_env, serve)
