"""Capture a RawSnapshot of the demo clutter as JSON for tamer's unit tests.

Run as root: .venv/bin/python scripts/capture_snapshot.py packages/tamer/tests/unit/data/snapshot.json
"""

from __future__ import annotations

import json
import sys

from tamer.clutter import make_clutter
from tamer.collect import read_raw_snapshot
from tamer.sandbox import PrivateEngine

with PrivateEngine.create() as sandbox:
    make_clutter(sandbox.engine, log_mb=2)
    raw = read_raw_snapshot(sandbox.engine)
    text = json.dumps(raw.to_json(), indent=1, sort_keys=True)
    # the sandbox path is random; make the capture stable
    text = text.replace(str(sandbox.base), "/var/lib/docker-sandbox")
with open(sys.argv[1], "w") as fh:
    fh.write(text)
print(f"wrote {sys.argv[1]}")
