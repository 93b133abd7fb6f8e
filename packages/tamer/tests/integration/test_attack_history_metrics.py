"""Hostile names and labels through history, metrics and serve, on the private engine.

Anyone who can start a container writes labels; a compose project label becomes an owner that tamer
prints in tables, writes in the HTML report, exports as a Prometheus label and shows on serve's page.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

BUSYBOX = "tamer-test/busybox:1"
HOSTILE = '<script>alert(1)</script>"q\\b\nline\x1b[2J\rcr\u202eü'
OWNER = f"project:{HOSTILE}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "\\": "\\", '"': '"'}[m.group(1)], value)


def test_a_hostile_owner_label_is_inert_in_history_report_metrics_and_serve(eng: Any, tmp_path: Path) -> None:
    eng.engine.create_volume("hostile-owner", labels={"com.docker.compose.project": HOSTILE})
    eng.docker("run", "--rm", "-v", "hostile-owner:/d", BUSYBOX, "sh", "-c", "echo a > /d/f")
    assert eng.tamer("record").returncode == 0
    eng.docker("run", "--rm", "-v", "hostile-owner:/d", BUSYBOX, "sh", "-c", "echo bbbbbbbb >> /d/f")
    assert eng.tamer("record").returncode == 0

    # the table: the owner is there, its control characters are not (ESC rewrote the screen, CR the line)
    human = eng.tamer("history", "--by", "owner")
    assert human.returncode == 0, human.stderr
    assert 'project:<script>alert(1)</script>"q\\b?line?[2J?cr?ü' in human.stdout
    assert not set("\x1b\r\u202e") & set(human.stdout)

    # the HTML report: escaped, never markup
    report = tmp_path / "report"
    assert eng.tamer("history", "--by", "owner", "--report", str(report)).returncode == 0
    page = (report / "tamer-history.html").read_text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>alert" not in page

    # the Prometheus text: the label value comes back exactly, and promtool accepts the exposition
    folder = tmp_path / "textfile"
    folder.mkdir()
    assert eng.tamer("metrics", "--textfile", str(folder)).returncode == 0
    with open(folder / "tamer.prom", encoding="utf-8", newline="") as fh:  # a CR read as it is
        text = fh.read()
    values = [
        _unescape(m.group(1))
        for m in re.finditer(r'^tamer_owner_bytes\{owner="((?:[^"\\]|\\.)*)"', text, re.M)
    ]
    assert OWNER in values
    promtool = shutil.which("promtool")
    if promtool is not None:
        check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
        assert check.returncode == 0, check.stderr

    # serve: its page escapes the owner; a second serve on the same port is refused, the first serves on
    port = _free_port()
    cmd = [sys.executable, "-m", "tamer", "serve", "-q", "--listen", f"127.0.0.1:{port}", "--refresh", "1h"]
    first = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_env(eng))
    try:
        page = _get(f"http://127.0.0.1:{port}/", first)
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>alert" not in page
        second = subprocess.run([*cmd, "--json"], capture_output=True, text=True, env=_env(eng), timeout=120)
        doc = json.loads(second.stdout)
        assert second.returncode == 1 and doc["exit_code"] == 1 and "already in use" in doc["errors"][0]
        assert OWNER.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") in _get(
            f"http://127.0.0.1:{port}/metrics", first
        )
    finally:
        first.terminate()
        first.wait(timeout=30)


def _env(eng: Any) -> dict[str, str]:
    import os

    return {**os.environ, "DOCKER_HOST": eng.host}


def _get(url: str, proc: subprocess.Popen[bytes]) -> str:
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(url, timeout=10) as answer:
                return str(answer.read().decode())
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_serve_killed_mid_refresh_restarts_on_its_port_with_an_intact_store(
    eng: Any, tmp_path: Path, private_state_dir: Path
) -> None:
    """kill -9 at random moments of a 1-second refresh (each refresh records a snapshot), then start again."""
    import random
    import sqlite3

    port = _free_port()
    cmd = [sys.executable, "-m", "tamer", "serve", "-q", "--listen", f"127.0.0.1:{port}", "--refresh", "1s"]
    rng = random.Random(12)
    for _ in range(3):
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env(eng))
        _get(f"http://127.0.0.1:{port}/metrics", proc)
        time.sleep(rng.uniform(0.2, 1.5))
        proc.kill()  # SIGKILL: no handler runs
        proc.wait()
    again = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_env(eng))
    try:
        assert "tamer_data_root_free_bytes" in _get(f"http://127.0.0.1:{port}/metrics", again)
    finally:
        again.terminate()
        assert again.wait(timeout=30) == 0
    with sqlite3.connect(private_state_dir / "snapshots.sqlite") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert db.execute("SELECT count(*) FROM snapshots").fetchone()[0] >= 3
    history = json.loads(eng.tamer("history", "--json").stdout)
    assert history["exit_code"] == 0 and history["data"]["snapshots"] >= 3


def test_a_sigterm_as_soon_as_the_port_serves_stops_serve_cleanly(eng: Any) -> None:
    """SIGTERM the moment serving starts (what a supervisor or a scraper-driven test may do): exit 0 and
    "stopped", never death by the default action. The handler used to be set after serving began: a
    loaded CI machine once terminated serve in that window (exit -15)."""
    code = (
        "import os, signal, sys\n"
        "import tamer.serve as s\n"
        "real = s.serve_on\n"
        "def serve_then_term(server, keeper):\n"
        "    real(server, keeper)\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "s.serve_on = serve_then_term\n"
        "from tamer.cli import main\n"
        "raise SystemExit(main(sys.argv[1:]))\n"
    )
    port = _free_port()
    proc = subprocess.run(
        [sys.executable, "-c", code, "serve", "-q", "--listen", f"127.0.0.1:{port}", "--refresh", "60s"],
        capture_output=True,
        text=True,
        env=_env(eng),
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "stopped serving" in proc.stdout
