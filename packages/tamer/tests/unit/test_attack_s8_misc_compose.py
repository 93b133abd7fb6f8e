"""Hostile review (session 8, helper F) of `tamer compose check --fix`: an alias bomb inside the
long-syntax entry --fix names must cost what its text costs, as it does everywhere else."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

FIX = """
import sys
from pathlib import Path
from tamer.compose.files import read_compose, parse_yaml, plain
from tamer.compose.fix import apply_fix, plan_names, render
from tamer.compose.model import build_model
from tamer.compose.rules import EngineFacts, check

path = Path(sys.argv[1])
src = read_compose(path)
model = build_model(src.data, src.env, src.project_dir, str(path))
facts = EngineFacts("/var/lib/docker", "json-file", {}, {"mongo:7": {"id": "sha256:x", "volumes": []}})
planned = plan_names(model, check(model, facts), [])
assert [p.path for p in planned] == ["/data/db"], planned
apply_fix(src.document, planned)
text = render(src.document, src.text)
again = build_model(plain(parse_yaml(text, "copy"), src.env, "copy"), src.env, src.project_dir)
(mount,) = [m for s in again.services for m in s.mounts]
assert (mount.kind, mount.source, mount.target) == ("volume", planned[0].key, "/data/db"), mount
print(len(text))
"""


def test_an_alias_bomb_in_the_entry_fix_names_is_copied_in_linear_time(tmp_path: Path) -> None:
    # `_unanchored_copy` walked the copy without remembering shared nodes: 10^9 paths, 10^9 visits (hung)
    lines = ['x-l0: &l0 ["a", "a", "a", "a", "a", "a", "a", "a", "a", "a"]']
    for i in range(1, 10):
        lines.append(f"x-l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]")
    lines += [
        "services:",
        "  db:",
        "    image: mongo:7",
        "    volumes:",
        "      - type: volume",
        "        target: /data/db",
        "        x-bomb: *l9",
    ]
    compose = tmp_path / "compose.yaml"
    compose.write_text("\n".join(lines) + "\n")
    try:
        proc = subprocess.run(
            [sys.executable, "-c", FIX, str(compose)], capture_output=True, text=True, timeout=120
        )
    except subprocess.TimeoutExpired:
        pytest.fail("--fix walked every path of an alias bomb (10^9) instead of each node once")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert int(proc.stdout) < 10 * len(compose.read_text())  # the copy stays the size of its text


def _build(tmp_path: Path, services: dict[str, dict[str, Any]]) -> Any:
    from tamer.compose.files import read_compose
    from tamer.compose.model import build_model

    path = tmp_path / "compose.yaml"
    path.write_text(json.dumps({"services": services}))  # JSON is YAML
    src = read_compose(path)
    return build_model(src.data, src.env, src.project_dir, str(path))


BUILD = """
import sys
from pathlib import Path
from tamer.compose.files import read_compose
from tamer.compose.model import build_model
path = Path(sys.argv[1])
src = read_compose(path)
model = build_model(src.data, src.env, src.project_dir, str(path))
print(sum(len(s.mounts) for s in model.services))
"""


def test_volumes_from_with_exponentially_many_paths_is_walked_once_per_service(tmp_path: Path) -> None:
    # each service takes the volumes of all before it (a valid, acyclic file): the walk followed every
    # path, 2^29 of them for the last service (hung); 9 services all-to-all took seconds, 12 hours
    n = 30
    services = {
        f"s{i}": {"image": "busybox", "volumes": [f"/d{i}"], "volumes_from": [f"s{j}" for j in range(i)]}
        for i in range(n)
    }
    compose = tmp_path / "compose.yaml"
    compose.write_text(json.dumps({"services": services}))
    try:
        proc = subprocess.run(
            [sys.executable, "-c", BUILD, str(compose)], capture_output=True, text=True, timeout=120
        )
    except subprocess.TimeoutExpired:
        pytest.fail("volumes_from was walked along every path (2^29) instead of once per service")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert int(proc.stdout) == n * (n + 1) // 2  # service i mounts /d0.../di


def _all_paths(name: str, graph: dict[str, list[tuple[str, bool]]], path: tuple[str, ...]) -> list[Any]:
    """The walk as it was (every simple path): the meaning the fast walk must keep."""
    found: list[tuple[str, bool]] = []
    for ref, ro in graph[name]:
        if ref in path or ref == name:
            continue
        found.append((ref, ro))
        found += [(b, r or ro) for b, r in _all_paths(ref, graph, (*path, name))]
    return found


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(
        st.lists(st.tuples(st.integers(0, 4), st.booleans()), max_size=4),
        min_size=1,
        max_size=5,
    )
)
def test_the_fast_walk_mounts_what_every_path_did(
    tmp_path: Path, edges: list[list[tuple[int, bool]]]
) -> None:
    n = len(edges)
    graph = {f"s{i}": [(f"s{j % n}", ro) for j, ro in out] for i, out in enumerate(edges)}
    own = {name: [f"/own{name}", *(["/shared"] if i % 2 else [])] for i, name in enumerate(graph)}
    services = {
        name: {
            "image": "busybox",
            "volumes": own[name],
            "volumes_from": [f"{ref}:ro" if ro else ref for ref, ro in graph[name]],
        }
        for name in graph
    }
    model = _build(tmp_path, services)
    for svc in model.services:
        expected: dict[str, tuple[str, bool]] = {}
        for base, ro in _all_paths(svc.name, graph, ()):
            for target in own[base]:
                if target not in own[svc.name]:
                    expected.setdefault(target, (base, ro))
        got = {
            m.target: (m.via.removeprefix("volumes_from:"), m.read_only)
            for m in svc.mounts
            if m.via != "volumes"
        }
        assert got == expected, (svc.name, graph)


@pytest.mark.parametrize("key", ["volumes_from", "extends"])
def test_a_chain_past_the_stack_is_a_usage_error_not_an_internal_error(
    key: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 1500 services each resting on the next: RecursionError came out as "internal error", exit 1
    from tamer.cli.app import main

    n = 1500

    def service(i: int) -> dict[str, Any]:
        if i + 1 == n:
            return {"image": "busybox"}
        link: Any = [f"s{i + 1}"] if key == "volumes_from" else {"service": f"s{i + 1}"}
        return {"image": "busybox", key: link}

    (tmp_path / "compose.yaml").write_text(json.dumps({"services": {f"s{i}": service(i) for i in range(n)}}))
    before = sorted(p.name for p in tmp_path.iterdir())
    code = main(["compose", "check", str(tmp_path), "--fix", "-H", "unix:///nonexistent/docker.sock"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "internal error" not in err and "too deep" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_a_dotenv_value_nested_past_the_stack_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the compose file's own deep ${...} said "nests too deeply"; the same in .env was an internal error
    from tamer.cli.app import main

    value = "x"
    for _ in range(3000):
        value = "${A:-" + value + "}"
    (tmp_path / ".env").write_text(f"B={value}\n")
    (tmp_path / "compose.yaml").write_text("services:\n  a:\n    image: busybox\n")
    code = main(["compose", "check", str(tmp_path), "--fix", "-H", "unix:///nonexistent/docker.sock"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "internal error" not in err and ".env" in err and "too deeply" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == [".env", "compose.yaml"]


BOMB_RUN = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))  # a bomb ends in MemoryError, not the machine's memory
from tamer.cli.app import main
sys.exit(main(["compose", "check", sys.argv[1], "--fix", "-H", "unix:///nonexistent/docker.sock"]))
"""


@pytest.mark.parametrize("where", ["dotenv", "file"])
def test_variables_that_multiply_a_value_are_a_usage_error_not_all_memory(where: str, tmp_path: Path) -> None:
    # .env lines that each use the one before twice (2^40 characters at line 40), or a compose file
    # that uses a 4 MiB variable thousands of times: tamer filled memory (here: MemoryError, exit 1)
    if where == "dotenv":
        lines = ["B0=xxxxxxxxxxxxxxxx"] + [f"B{i}=${{B{i - 1}}}${{B{i - 1}}}" for i in range(1, 41)]
        (tmp_path / ".env").write_text("\n".join(lines) + "\n")
        (tmp_path / "compose.yaml").write_text("services:\n  a:\n    image: busybox\n")
    else:
        (tmp_path / ".env").write_text("BIG=" + "x" * (4 << 20) + "\n")
        refs = "${BIG}" * 1000
        (tmp_path / "compose.yaml").write_text(
            "services:\n  a:\n    image: busybox\n    environment:\n"
            + "".join(f"      X{i}: '{refs}'\n" for i in range(50))
        )
    before = sorted(p.name for p in tmp_path.iterdir())
    proc = subprocess.run(
        [sys.executable, "-c", BOMB_RUN, str(tmp_path)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "internal error" not in proc.stderr and "characters once their variables" in proc.stderr.replace(
        "its variables", "their variables"
    ), proc.stderr[-2000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == before
