"""Heavy libraries (models, OCR, media decoders) load only inside engine modules, in
media worker processes: importing any service's composition root, or media_svc's
processor registry in the parent, pulls none of them in."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = (
    "faster_whisper",
    "ctranslate2",
    "onnxruntime",
    "rapidocr",
    "av",
    "cv2",
    "pypdf",
    "docx",
    "PIL",
    "numpy",
)

PROBE = """
import json, sys
import services.gateway.server, services.queue_svc.server, services.media_svc.server
from services.media_svc.processors.registry import default_registry
from services.media_svc.definitions import build
from services.common.routing import default_definitions
build(default_definitions().to_document(), default_registry())
print(json.dumps(sorted(m for m in HEAVY if m in sys.modules)))
"""


def test_service_processes_import_no_heavy_library() -> None:
    result = subprocess.run(
        [sys.executable, "-c", f"HEAVY = {HEAVY!r}\n{PROBE}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []
