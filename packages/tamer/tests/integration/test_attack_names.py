"""Attack: object names that are URL path tricks (`../../etc`, `../containers/json`).

The engine client puts names into URL paths; dot segments are resolved before
the request reaches the engine (urllib3 normalizes them, Go's router redirects
to the cleaned path), so a "volume" named `../containers/json` asks the engine
about something else entirely. Every command must answer such a name with a
clear error (what was wrong, what was expected), exit 1, never "internal error",
and change nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

TRICKS = ("../../etc", "../containers/json", "x/../../volumes")
BUSYBOX = "tamer-test/busybox:1"
# (was xfail: tamer.engine put names into URL paths as they were; fixed by tamer.engine.client.path_name)


@pytest.mark.parametrize("name", TRICKS)
def test_volume_backup_of_a_path_trick_name_is_a_clear_error(eng: Any, tmp_path: Path, name: str) -> None:
    out = tmp_path / "b.tar.zst"
    proc = eng.tamer("volume", "backup", name, "-o", str(out))
    assert proc.returncode == 1, proc
    assert "internal error" not in proc.stderr and name in proc.stderr, proc.stderr
    assert not out.exists()


@pytest.mark.parametrize("name", TRICKS)
def test_adopt_of_a_path_trick_name_is_a_clear_error(eng: Any, name: str) -> None:
    proc = eng.tamer("adopt", name)
    assert proc.returncode == 1, proc
    assert "internal error" not in proc.stderr and name in proc.stderr, proc.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("volume", "move", "../x", "--to", "/tmp/nowhere"),
        ("volume", "create", "a" * 300),
        ("volume", "create", "a\nb"),
    ],
)
def test_names_the_engine_cannot_hold_are_clear_errors(eng: Any, args: tuple[str, ...]) -> None:
    before = set(eng.docker("volume", "ls", "-q").split())
    proc = eng.tamer(*args)
    assert proc.returncode in (1, 2) and "internal error" not in proc.stderr, proc
    assert set(eng.docker("volume", "ls", "-q").split()) == before


def test_adopt_with_a_derived_name_too_long_is_refused_in_the_preview(eng: Any) -> None:
    name = "c" + "x" * 200
    eng.docker("run", "-d", "--name", name, "-v", "/data/" + "y" * 60, BUSYBOX, "sleep", "300")
    started = eng.docker("inspect", "-f", "{{.State.StartedAt}}", name).strip()
    proc = eng.tamer("adopt", name)
    assert proc.returncode == 2 and "--name-for" in proc.stderr, proc
    eng.tamer("adopt", name, "--apply", "--yes")
    assert eng.docker("inspect", "-f", "{{.State.StartedAt}}", name).strip() == started, "stopped for nothing"
