"""`python -m services.media_svc`: the media processing service (env: see README)."""

from services.common.entrypoint import run_service
from services.media_svc.config import MediaConfig
from services.media_svc.server import serve


def main() -> None:
    run_service("media_svc", MediaConfig.from_env, serve)


if __name__ == "__main__":
    main()
