#!/usr/bin/env bash
# The main job: the whole pipeline on the embedded store, end to end.
# Filled in as the services land; until then it says exactly what it can show.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "demo: the services are not built yet; what exists is the contract layer."
echo "demo: validating the golden wire fixtures against the generated code:"
.venv/bin/python - <<'PY'
from tests.helpers.fixtures import frame_text, load_fixtures
from services.common.wire import FrameError, parse_node_frame, parse_gateway_frame
for kind in ("valid", "invalid"):
    for name, fx in load_fixtures(kind):
        parse = parse_node_frame if fx["message_type"].endswith("NodeFrame") else parse_gateway_frame
        try:
            frame = parse(frame_text(fx))
            print(f"  accepted {name}: {frame.WhichOneof('payload')}")
        except FrameError as exc:
            print(f"  rejected {name}: {exc.reason[:100]}")
PY
