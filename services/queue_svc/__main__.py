"""`python -m services.queue_svc`: the queue service, configured from the environment."""

import asyncio

from services.queue_svc.config import Config
from services.queue_svc.server import serve

if __name__ == "__main__":
    asyncio.run(serve(Config.from_env()))
