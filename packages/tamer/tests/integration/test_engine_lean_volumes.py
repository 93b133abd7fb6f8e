"""A volume's creation and removal over the lean transport (issue 11), on the private engine.

`tamer volume restore` imported the docker SDK (0.2-0.3 s) only to create its volume. On a unix socket
that request now goes over tamer's own transport: the volume it makes must be the one docker-py makes
(name, driver, options, labels), an engine's refusal must read the same, and no SDK is imported."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
from tamer.engine.client import connect
from tamer.errors import TamerError

SCRIPT = """
import json, sys
from tamer.engine.client import connect
e = connect(sys.argv[1])
out = {"created": e.create_volume(sys.argv[2], driver_opts={"type": "tmpfs", "device": "tmpfs",
       "o": "size=1m"}, labels={"owner": "a b", "é": "ü"})}
out["inspect"] = e.inspect_volume(sys.argv[2])
e.remove_volume(sys.argv[2])
out["docker_imported"] = "docker" in sys.modules
print(json.dumps(out))
"""


def _shape(v: dict[str, Any]) -> dict[str, Any]:
    return {k: v.get(k) for k in ("Name", "Driver", "Options", "Labels", "Scope")}


def test_lean_create_and_remove_equal_docker_py_and_import_no_sdk(eng: Any) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, eng.host, "lean-vol"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    lean = json.loads(proc.stdout)
    assert lean["docker_imported"] is False
    assert "lean-vol" not in eng.docker("volume", "ls", "-q").split()  # removed again
    engine = connect(eng.host)
    sdk = engine.api.create_volume(  # docker-py's own request, for comparison
        name="sdk-vol",
        driver="local",
        driver_opts={"type": "tmpfs", "device": "tmpfs", "o": "size=1m"},
        labels={"owner": "a b", "é": "ü"},
    )
    try:
        for ours, theirs in ((lean["created"], sdk), (lean["inspect"], engine.inspect_volume("sdk-vol"))):
            assert {**_shape(ours), "Name": "x"} == {**_shape(theirs), "Name": "x"}
        assert lean["inspect"]["Labels"] == {"owner": "a b", "é": "ü"}
    finally:
        engine.remove_volume("sdk-vol")


def test_refusals_read_as_before(eng: Any) -> None:
    engine = connect(eng.host)
    with pytest.raises(TamerError) as bad:
        engine.create_volume("a/b")  # a name the engine refuses
    assert "a/b" in str(bad.value)
    cid = eng.docker("create", "-v", "held:/data", "tamer-test/busybox:1", "true").strip()
    try:
        with pytest.raises(TamerError) as busy:
            engine.remove_volume("held")  # in use by a container: the engine's 409
        assert "held" in str(busy.value) and "in use" in str(busy.value), str(busy.value)
        assert "held" in eng.docker("volume", "ls", "-q").split()
    finally:
        eng.docker("rm", cid)
        engine.remove_volume("held")
    assert "held" not in eng.docker("volume", "ls", "-q").split()
