"""The shared `__main__` shape: load config, serve, and turn known errors into a clear
message and exit status instead of a traceback.

`python -m services.<name> --check` stops after the configuration: the module and
everything its server imports are loaded and the environment is parsed, nothing is
opened. The image smoke test (`make images`) runs it inside each built image."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from services.common import logs
from services.common.errors import ChatbotError, InvalidInputError
from services.common.event_loop import event_loop_choice, run
from services.common.memory_trace import start_memory_trace

C = TypeVar("C")

CHECK_FLAG = "--check"


def run_service(
    name: str, load_config: Callable[[], C], serve: Callable[[C], Coroutine[Any, Any, None]]
) -> None:
    """Exit status 2 for bad configuration, 1 when the service cannot run."""
    try:
        logs.configure(os.environ.get("LOG_LEVEL", "INFO"))
        config = load_config()
        loop = event_loop_choice(os.environ)
        start_memory_trace(os.environ)
    except InvalidInputError as error:
        print(f"{name}: configuration error: {error}", file=sys.stderr)
        sys.exit(2)
    if CHECK_FLAG in sys.argv[1:]:
        print(f"{name}: configuration ok", file=sys.stderr)
        sys.exit(0)
    try:
        run(serve(config), loop)
    except ChatbotError as error:
        print(f"{name}: stopped: {error}", file=sys.stderr)
        sys.exit(1)
