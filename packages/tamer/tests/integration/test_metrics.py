"""tamer metrics and tamer serve on the private engine, scraped by a real Prometheus server.

The oracle for a volume's figures is `du` on the volume's folder:
- tamer_volume_bytes is docker's apparent count: `du -sb` minus the directories' own sizes
  (docker, and tamer after it, count file sizes only; hard links once, as du does);
- tamer_volume_allocated_bytes is `du -sB1` (blocks, directories included; a sparse file counts its blocks).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest

BUSYBOX = "tamer-test/busybox:1"
PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")
T = TypeVar("T")


def du_figures(folder: Path) -> tuple[int, int]:
    """(apparent as docker counts it, allocated) of `folder`, from du and find."""
    du_b = int(
        subprocess.run(["du", "-sb", str(folder)], capture_output=True, text=True, check=True).stdout.split()[
            0
        ]
    )
    du_alloc = int(
        subprocess.run(
            ["du", "-sB1", str(folder)], capture_output=True, text=True, check=True
        ).stdout.split()[0]
    )
    dirs = subprocess.run(
        ["find", str(folder), "-type", "d", "-printf", "%s\n"], capture_output=True, text=True, check=True
    ).stdout.split()
    return du_b - sum(int(d) for d in dirs), du_alloc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 60.0) -> T:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            got = probe()
        except OSError as exc:  # not listening yet
            last = exc
        else:
            if got is not None:
                return got
            last = got
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def http_get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return str(resp.read().decode())


def scrape_value(url: str, series: str) -> float | None:
    for line in http_get(url).splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


@contextmanager
def process(cmd: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def tamer_serve(eng: Any, port: int, refresh: str, log: Path) -> Any:
    env = {**os.environ, "DOCKER_HOST": eng.host}
    cmd = [sys.executable, "-m", "tamer", "serve", "--listen", f"127.0.0.1:{port}", "--refresh", refresh]
    return process(cmd, env, log)


def volume_with_data(eng: Any, name: str) -> Path:
    """A named volume holding a file, a hard link to it, a sparse file and a folder of small files."""
    eng.docker("volume", "create", name)
    eng.docker(
        "run",
        "--rm",
        "-v",
        f"{name}:/v",
        BUSYBOX,
        "sh",
        "-c",
        "dd if=/dev/urandom of=/v/blob bs=1k count=300 2>/dev/null; ln /v/blob /v/link; "
        "dd if=/dev/zero of=/v/sparse bs=1 count=1 seek=5000000 2>/dev/null; "
        "mkdir -p /v/d/e; for i in 1 2 3 4 5; do echo hello$i > /v/d/e/f$i; done",
    )
    folder = Path(json.loads(eng.docker("volume", "inspect", name))[0]["Mountpoint"])
    assert folder.is_dir(), folder
    return folder


def grow(eng: Any, name: str, kib: int) -> None:
    eng.docker(
        "run",
        "--rm",
        "-v",
        f"{name}:/v",
        BUSYBOX,
        "sh",
        "-c",
        f"dd if=/dev/urandom of=/v/more bs=1k count={kib} 2>/dev/null",
    )


@pytest.mark.skipif(
    PROMETHEUS is None, reason="prometheus is not installed (Debian: prometheus; make venv installs it)"
)
def test_prometheus_scrapes_tamer_serve_and_a_volume_equals_du(eng: Any, tmp_path: Path) -> None:
    assert PROMETHEUS is not None
    name = "metrics-scraped"
    folder = volume_with_data(eng, name)
    apparent, allocated = du_figures(folder)
    assert allocated < apparent  # the sparse file: the two figures differ, so each is checked for itself
    tamer_port, prom_port = free_port(), free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: tamer\n    static_configs: [{{targets: ['127.0.0.1:{tamer_port}']}}]\n"
    )
    prom_cmd = [
        PROMETHEUS,
        f"--config.file={config}",
        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{prom_port}",
        "--log.level=warn",
    ]
    api = f"http://127.0.0.1:{prom_port}/api/v1/query?query="

    def query(promql: str) -> float | None:
        doc = json.loads(http_get(api + urllib.parse.quote(promql)))
        assert doc["status"] == "success", doc
        result = doc["data"]["result"]
        assert len(result) <= 1, result
        return float(result[0]["value"][1]) if result else None

    with (
        tamer_serve(eng, tamer_port, "1s", tmp_path / "serve.log") as serve,
        process(prom_cmd, dict(os.environ), tmp_path / "prometheus.log") as prom,
    ):
        try:
            got = wait_for(
                "Prometheus to scrape the volume", lambda: query(f'tamer_volume_bytes{{volume="{name}"}}')
            )
            assert got == apparent
            assert (
                query(f'tamer_volume_allocated_bytes{{volume="{name}",placement="default",kind="named"}}')
                == allocated
            )
            assert query('up{job="tamer"}') == 1
            # the background refresh: the volume grows, the next snapshots (not the scrapes) see it
            grow(eng, name, 200)
            apparent2, _ = du_figures(folder)
            assert apparent2 == apparent + 200 * 1024
            wait_for(
                "the grown volume in Prometheus",
                lambda: query(f'tamer_volume_bytes{{volume="{name}"}}') == apparent2 or None,
            )
            assert query("tamer_snapshot_refresh_ok") == 1
        except AssertionError:
            for log in ("serve.log", "prometheus.log"):
                print(log, (tmp_path / log).read_text(errors="replace")[-3000:])
            raise
    assert serve.returncode == 0, (tmp_path / "serve.log").read_text()  # SIGTERM stops it cleanly
    assert prom.returncode is not None


def test_a_scrape_serves_the_snapshot_and_never_walks(eng: Any, tmp_path: Path) -> None:
    name = "metrics-snapshot-only"
    folder = volume_with_data(eng, name)
    apparent, _ = du_figures(folder)
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    series = f'tamer_volume_bytes{{volume="{name}",placement="default",kind="named"}}'
    with tamer_serve(eng, port, "1h", tmp_path / "serve.log"):
        assert wait_for("the first snapshot", lambda: scrape_value(url, "tamer_snapshot_refresh_ok")) == 1
        assert scrape_value(url, series) == apparent
        grow(eng, name, 100)
        age1 = scrape_value(url, "tamer_snapshot_age_seconds")
        time.sleep(1.1)
        assert scrape_value(url, series) == apparent  # the scrape did not walk the grown volume
        age2 = scrape_value(url, "tamer_snapshot_age_seconds")
        assert age1 is not None and age2 is not None and age2 >= age1 + 1
        page = http_get(f"http://127.0.0.1:{port}/")
        assert name in page and "/metrics" in page


def test_tamer_metrics_on_the_engine(eng: Any, tmp_path: Path) -> None:
    assert PROMTOOL is not None, "promtool is not installed (Debian: prometheus package)"
    name = "metrics-printed"
    folder = volume_with_data(eng, name)
    apparent, allocated = du_figures(folder)
    proc = eng.tamer("metrics")
    assert proc.returncode == 0, proc.stderr
    check = subprocess.run([PROMTOOL, "check", "metrics"], input=proc.stdout, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert (
        f'tamer_volume_bytes{{volume="{name}",placement="default",kind="named"}} {apparent}\n' in proc.stdout
    )
    assert (
        f'tamer_volume_allocated_bytes{{volume="{name}",placement="default",kind="named"}} {allocated}\n'
        in proc.stdout
    )
    volumes_total = sum(
        int(line.rsplit(" ", 1)[1])
        for line in proc.stdout.splitlines()
        if line.startswith("tamer_volume_bytes{")
    )
    assert f'tamer_kind_bytes{{kind="volume"}} {volumes_total}\n' in proc.stdout  # one folder per volume here
    # the snapshot was recorded: a second run within --max-age reuses it; --max-age 0s takes a new one
    first = json.loads(eng.tamer("metrics", "--json").stdout)
    assert first["status"] == "ok" and first["data"]["snapshot_reused"] is True
    assert first["data"]["text"].startswith("# HELP tamer_volume_bytes")
    fresh = json.loads(eng.tamer("metrics", "--json", "--max-age", "0s").stdout)
    assert fresh["data"]["snapshot_reused"] is False
    # node_exporter's textfile collector
    out = tmp_path / "textfile"
    out.mkdir()
    proc = eng.tamer("metrics", "--textfile", str(out), "--series-limit", "0")
    assert proc.returncode == 0 and str(out / "tamer.prom") in proc.stdout, proc.stderr
    assert os.listdir(out) == ["tamer.prom"]
    text = (out / "tamer.prom").read_text()
    assert f'volume="{name}"' not in text and 'volume="__other__"' in text  # limit 0: every volume folded
    check = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_serve_refuses_an_unreachable_engine_and_frees_the_port(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"}
    cmd = [sys.executable, "-m", "tamer", "serve", "--listen", f"127.0.0.1:{port}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 1 and "no-engine.sock" in proc.stderr and "Traceback" not in proc.stderr
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))  # nothing is left listening


@pytest.mark.skipif(shutil.which("faketime") is None, reason="faketime is not installed")
def test_a_snapshot_from_a_shifted_clock_is_never_served_as_fresh(eng: Any, tmp_path: Path) -> None:
    name = "metrics-clock"
    folder = volume_with_data(eng, name)
    apparent, _ = du_figures(folder)
    env = {**os.environ, "DOCKER_HOST": eng.host, "TAMER_STATE_DIR": str(tmp_path / "state")}

    def metrics(fake: str | None) -> dict[str, Any]:
        cmd = [
            *(("faketime", "-f", fake) if fake else ()),
            sys.executable,
            "-m",
            "tamer",
            "metrics",
            "--json",
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return dict(json.loads(proc.stdout)["data"])

    ahead = metrics("+1d")  # recorded with a clock a day ahead
    assert ahead["snapshot_reused"] is False
    now = metrics(None)  # its age is negative: unknown, so a new one is taken
    assert now["snapshot_reused"] is False and now["snapshot_taken_at"] < ahead["snapshot_taken_at"]
    behind = metrics("-2m")  # the last one recorded is two minutes old by the right clock
    assert behind["snapshot_reused"] is False
    again = metrics(None)
    assert again["snapshot_reused"] is False
    reused = metrics(None)
    assert reused["snapshot_reused"] is True and reused["snapshot_taken_at"] == again["snapshot_taken_at"]
    assert (
        f'tamer_volume_bytes{{volume="{name}",placement="default",kind="named"}} {apparent}\n'
        in reused["text"]
    )


def test_a_damaged_snapshot_store_warns_and_the_figures_still_come(eng: Any, tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "snapshots.sqlite").write_bytes(b"not a database " * 200)
    env = {**os.environ, "DOCKER_HOST": eng.host, "TAMER_STATE_DIR": str(state)}
    proc = subprocess.run(
        [sys.executable, "-m", "tamer", "metrics"], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("# HELP tamer_volume_bytes") and "tamer_info{" in proc.stdout
    assert "warning" in proc.stderr and "snapshots.sqlite" in proc.stderr and "Traceback" not in proc.stderr
    assert (
        state / "snapshots.sqlite"
    ).read_bytes() == b"not a database " * 200  # left for the user to look at


def test_the_last_clean_is_read_from_the_journal(eng: Any, tmp_path: Path) -> None:
    eng.docker(
        "run", "--name", "metrics-stopped", BUSYBOX, "sh", "-c", "dd if=/dev/zero of=/junk bs=1k count=64"
    )
    before = eng.tamer("metrics", "--max-age", "0s")
    assert "\ntamer_last_clean_timestamp_seconds 0\n" in before.stdout, before.stderr
    assert '\ntamer_journal_unfinished{operation="clean"} 0\n' in before.stdout
    clean = eng.tamer("clean", "--apply", "--yes", "--json")
    result = json.loads(clean.stdout)
    assert clean.returncode == 0 and result["data"]["reclaimed"] > 64 * 1024, clean.stdout
    after = eng.tamer("metrics", "--max-age", "0s")
    values = {
        line.split(" ")[0]: float(line.split(" ")[1])
        for line in after.stdout.splitlines()
        if line.startswith("tamer_last_clean")
    }
    assert values["tamer_last_clean_freed_bytes"] == result["data"]["reclaimed"]
    assert abs(values["tamer_last_clean_timestamp_seconds"] - time.time()) < 120


def test_serve_says_at_once_when_the_history_cannot_be_written(eng: Any, tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "snapshots.sqlite").write_bytes(b"not a database " * 200)
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    env = {**os.environ, "DOCKER_HOST": eng.host, "TAMER_STATE_DIR": str(state)}
    cmd = [sys.executable, "-m", "tamer", "serve", "-q", "--listen", f"127.0.0.1:{port}", "--refresh", "1h"]
    log = tmp_path / "serve.log"
    with process(cmd, env, log):
        assert wait_for("the first snapshot", lambda: scrape_value(url, "tamer_snapshot_refresh_ok")) == 1
        # while it runs, not at exit: a server's warnings must reach its log when they happen
        wait_for("the warning in the log", lambda: "not added to the history" in log.read_text() or None, 10)
        assert "serving" not in log.read_text()  # -q: no banner; warnings still come
