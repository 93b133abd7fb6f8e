"""`tamer fleet` over real OpenSSH: three sshd on loopback ports, each login pointed at its own private engine.

Host a is the session's engine, b and c are two more private engines started here. Each sshd gets its own
host key, the client key and known_hosts made by the test, and `SetEnv` points its logins at their engine
(DOCKER_HOST), their own tamer state (TAMER_STATE_DIR) and this checkout's tamer (PATH). The oracle for
each host is that host's own `tamer df --json`, run directly against its engine.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tamer.sandbox import PrivateEngine, build_busybox_image

SSHD = "/usr/sbin/sshd"
BUSYBOX = "tamer-test/busybox:1"
VENV_BIN = str(Path(sys.executable).parent)


@dataclass
class FleetHost:
    name: str
    port: int
    docker_host: str
    state_dir: Path

    def docker(self, *args: str, check: bool = True) -> str:
        proc = subprocess.run(
            ["docker", "-H", self.docker_host, *args], capture_output=True, text=True, timeout=120
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} on {self.name}: {proc.stderr}")
        return proc.stdout

    def tamer(self, *args: str) -> subprocess.CompletedProcess[str]:
        """tamer run directly against this host's engine and state: the oracle for what the fleet shows."""
        env = {**os.environ, "DOCKER_HOST": self.docker_host, "TAMER_STATE_DIR": str(self.state_dir)}
        return subprocess.run(
            [sys.executable, "-m", "tamer", *args], capture_output=True, text=True, env=env, timeout=300
        )


@dataclass
class Fleet:
    hosts: dict[str, FleetHost]
    key: Path
    known_hosts: Path

    def hosts_file(self, path: Path, extra: str = "", names: tuple[str, ...] = ("a", "b", "c")) -> Path:
        opts = ["-F", "/dev/null", "-i", str(self.key), "-o", f"UserKnownHostsFile={self.known_hosts}"]
        opts += ["-o", "StrictHostKeyChecking=yes", "-o", "IdentitiesOnly=yes"]
        lines = ["[defaults]", f"ssh_options = {json.dumps(opts)}", "connect_timeout = 5", ""]
        for name in names:
            h = self.hosts[name]
            lines += ["[[hosts]]", f'url = "ssh://root@127.0.0.1:{h.port}"', f'name = "{name}"']
            lines += [f'labels = {{ role = "r-{name}" }}', ""]
        path.write_text("\n".join(lines) + extra)
        return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _closed_port() -> int:
    return _free_port()  # nothing listens there once the probe socket is closed


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True, timeout=30)


def _wait_listening(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"sshd exited {proc.returncode}: {log.read_text(errors='replace')[-2000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"sshd did not listen on {port}: {log.read_text(errors='replace')[-2000:]}")


@pytest.fixture(scope="module")
def fleet(test_engine: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    if os.geteuid() != 0 or not os.path.exists(SSHD) or shutil.which("ssh") is None:
        pytest.skip(
            "!!! the fleet test needs root, /usr/sbin/sshd and ssh (Debian: openssh-server, openssh-client)"
        )
    base = tmp_path_factory.mktemp("fleet")
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation folder
    key = base / "client_key"
    _keygen(key)
    known = base / "known_hosts"
    engines: list[PrivateEngine] = []
    daemons: list[subprocess.Popen[bytes]] = []
    try:
        hosts: dict[str, FleetHost] = {"a": FleetHost("a", _free_port(), test_engine.host, base / "state-a")}
        for name in ("b", "c"):
            sandbox = PrivateEngine.create()
            engines.append(sandbox)
            build_busybox_image(sandbox.start(), BUSYBOX)
            hosts[name] = FleetHost(name, _free_port(), sandbox.host, base / f"state-{name}")
        known_lines = []
        for h in hosts.values():
            folder = base / f"sshd-{h.name}"
            folder.mkdir()
            h.state_dir.mkdir()
            _keygen(folder / "host_key")
            pub = (folder / "host_key.pub").read_text().strip()
            known_lines += [f"[127.0.0.1]:{h.port} {pub}", f"[localhost]:{h.port} {pub}"]
            shutil.copy(f"{key}.pub", folder / "authorized_keys")
            config = folder / "sshd_config"
            config.write_text(
                f"Port {h.port}\nListenAddress 127.0.0.1\nHostKey {folder / 'host_key'}\n"
                f"PidFile {folder / 'sshd.pid'}\nAuthorizedKeysFile {folder / 'authorized_keys'}\n"
                "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n"
                "PermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\nUseDNS no\n"
                f"SetEnv DOCKER_HOST={h.docker_host} TAMER_STATE_DIR={h.state_dir} "
                f"PATH={VENV_BIN}:/usr/local/bin:/usr/bin:/bin\n"
            )
            log = folder / "sshd.log"
            with open(log, "wb") as fh:
                proc = subprocess.Popen(
                    [SSHD, "-D", "-e", "-f", str(config)], stdout=fh, stderr=subprocess.STDOUT
                )
            daemons.append(proc)
            _wait_listening(h.port, proc, log)
        known.write_text("\n".join(known_lines) + "\n")
        yield Fleet(hosts, key, known)
    finally:
        for proc in daemons:
            proc.terminate()
            proc.wait(timeout=10)
        for sandbox in engines:
            sandbox.stop()


def _fleet(*args: str, cwd: Path) -> tuple[int, dict[str, Any]]:
    proc = subprocess.run(
        [sys.executable, "-m", "tamer", *args, "--json"], capture_output=True, text=True, timeout=300, cwd=cwd
    )
    return proc.returncode, json.loads(proc.stdout)


def _by_name(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {h["name"]: h for h in doc["data"]["hosts"]}


def test_fleet_df_rows_are_each_host_s_own_df_and_broken_hosts_are_reported(
    fleet: Fleet, tmp_path: Path
) -> None:
    a, b = fleet.hosts["a"], fleet.hosts["b"]
    made = [a.docker("create", "--name", "fleet-df-a", BUSYBOX, "true").strip()]
    b.docker("volume", "create", "fleet-df-vol")
    b.docker(
        "run",
        "--name",
        "fleet-df-b",
        "-v",
        "fleet-df-vol:/data",
        BUSYBOX,
        "dd",
        "if=/dev/zero",
        "of=/data/f",
        "bs=1M",
        "count=3",
    )
    try:
        extra = (
            f'[[hosts]]\nurl = "ssh://root@127.0.0.1:{_closed_port()}"\nname = "down"\n\n'
            f'[[hosts]]\nurl = "ssh://root@localhost:{a.port}"\nname = "bare"\ntamer = "tamer-not-installed-here"\n'
        )
        # "bare" logs in to a's sshd under another name (localhost), where no tamer-not-installed-here exists
        hosts = fleet.hosts_file(tmp_path / "hosts.toml", extra)
        rc, doc = _fleet("fleet", "df", "--hosts", str(hosts), cwd=tmp_path)
        rows = _by_name(doc)
        assert rc == 3 and doc["exit_code"] == 3 and doc["status"] == "partial"
        assert set(rows) == {"a", "b", "c", "down", "bare"}  # none dropped
        assert rows["down"]["status"] == "unreachable" and "Connection refused" in rows["down"]["message"]
        assert rows["bare"]["status"] == "no-tamer" and "tamer-not-installed-here" in rows["bare"]["message"]
        total = 0
        for name in ("a", "b", "c"):
            row = rows[name]
            assert row["status"] == "ok" and row["labels"] == {"role": f"r-{name}"}, row
            own = json.loads(fleet.hosts[name].tamer("df", "--json").stdout)["data"]
            size = sum(t["size"] for t in own["totals"])
            assert row["summary"]["size"] == size and row["summary"]["safe"] == own["safe_bytes"]
            assert row["summary"]["needs_decision"] == own["decision_bytes"]
            assert row["envelope"]["data"]["totals"] == own["totals"]
            total += size
        assert doc["data"]["total"]["size"] == total and doc["data"]["hosts_reported"] == 3
        vol = next(t for t in rows["b"]["envelope"]["data"]["totals"] if t["kind"] == "volume")
        assert vol["size"] >= 3 * 1024 * 1024  # b's volume was read on b
    finally:
        a.docker("rm", "-f", *made, check=False)
        b.docker("rm", "-f", "fleet-df-b", check=False)
        b.docker("volume", "rm", "-f", "fleet-df-vol", check=False)


def _names(host: FleetHost) -> set[str]:
    return set(host.docker("ps", "-a", "--format", "{{.Names}}").split())


def test_fleet_clean_applies_only_the_plans_shown_and_a_changed_host_refuses(
    fleet: Fleet, tmp_path: Path
) -> None:
    a, b, c = (fleet.hosts[n] for n in ("a", "b", "c"))
    a.docker("create", "--name", "fleet-a1", BUSYBOX, "true")
    b.docker("create", "--name", "fleet-b1", BUSYBOX, "sleep", "300")
    c.docker("create", "--name", "fleet-c1", BUSYBOX, "true")
    try:
        hosts = fleet.hosts_file(tmp_path / "hosts.toml")
        shown_file = tmp_path / "shown.json"
        # the preview removes nothing
        rc, doc = _fleet("fleet", "clean", "--hosts", str(hosts), cwd=tmp_path)
        assert rc == 0 and doc["data"]["applied"] is False
        assert "fleet-a1" in _names(a) and "fleet-b1" in _names(b) and "fleet-c1" in _names(c)

        rc, doc = _fleet("fleet", "plan", "--hosts", str(hosts), "-o", str(shown_file), cwd=tmp_path)
        assert rc == 0, doc
        shown = {h["name"]: h for h in doc["data"]["hosts"]}
        for name, container in (("a", "fleet-a1"), ("b", "fleet-b1"), ("c", "fleet-c1")):
            names = [x["name"] for x in shown[name]["envelope"]["data"]["actions"]]
            assert container in names, (name, names)
        saved = {e["name"]: e["plan_id"] for e in json.loads(shown_file.read_text())["hosts"]}
        assert saved == {n: shown[n]["summary"]["plan_id"] for n in ("a", "b", "c")}

        # in between: a gets a new stopped container the shown plan does not name; b's container starts;
        # c's saved plan is replaced by a newer one (someone planned again there)
        a.docker("create", "--name", "fleet-a2", BUSYBOX, "true")
        b.docker("start", "fleet-b1")
        c.docker("create", "--name", "fleet-c2", BUSYBOX, "true")
        remote_file = json.loads(shown_file.read_text())["hosts"][2]["plan_file"]
        replaced = c.tamer("plan", "-o", str(Path.home() / remote_file), "--json")
        assert replaced.returncode == 0, replaced.stderr

        rc, doc = _fleet(
            "fleet",
            "clean",
            "--hosts",
            str(hosts),
            "--plan",
            str(shown_file),
            "--apply",
            "--yes",
            cwd=tmp_path,
        )
        assert rc == 3 and doc["data"]["applied"] is True
        applied = {h["plan"]["name"]: h["apply"] for h in doc["data"]["hosts"]}
        assert applied["a"]["status"] == "ok" and applied["a"]["summary"]["plan_id"] == saved["a"]
        assert "fleet-a1" not in _names(a) and "fleet-a2" in _names(a)  # only what was shown
        assert applied["b"]["status"] == "partial" and "fleet-b1" in applied["b"]["message"]
        assert "fleet-b1" in _names(b)  # started since the plan: kept, and said so
        assert applied["c"]["status"] == "usage" and saved["c"] in applied["c"]["message"]
        assert {"fleet-c1", "fleet-c2"} <= _names(c)  # its plan changed: nothing removed there

        # the one-shot form: plan, show, apply those plans (a's new container was not in any shown plan)
        only_a = fleet.hosts_file(tmp_path / "only-a.toml", names=("a",))
        rc, doc = _fleet("fleet", "clean", "--hosts", str(only_a), "--apply", "--yes", cwd=tmp_path)
        assert rc == 0, doc
        host = doc["data"]["hosts"][0]
        assert host["apply"]["summary"]["plan_id"] == host["plan"]["summary"]["plan_id"]
        assert "fleet-a2" not in _names(a)
    finally:
        a.docker("rm", "-f", "fleet-a1", "fleet-a2", check=False)
        b.docker("rm", "-f", "fleet-b1", check=False)
        c.docker("rm", "-f", "fleet-c1", "fleet-c2", check=False)


def _forward_tcp_to_unix(sock_path: str) -> tuple[int, threading.Event]:
    """A loopback TCP port relaying to the engine's unix socket: the engine as a remote address looks."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def serve() -> None:
        while not stop.is_set():
            try:
                client, _ = server.accept()
            except TimeoutError:
                continue
            upstream = socket.socket(socket.AF_UNIX)
            upstream.connect(sock_path)
            threading.Thread(target=pipe, args=(client, upstream), daemon=True).start()
            threading.Thread(target=pipe, args=(upstream, client), daemon=True).start()
        server.close()

    threading.Thread(target=serve, daemon=True).start()
    return server.getsockname()[1], stop


def test_a_remote_engine_address_says_what_it_cannot_read_and_offers_the_fleet(
    eng: Any, tmp_path: Path
) -> None:
    port, stop = _forward_tcp_to_unix(eng.host.removeprefix("unix://"))
    try:
        remote = f"tcp://127.0.0.1:{port}"
        df = eng.tamer("-H", remote, "df", "--json")
        doc = json.loads(df.stdout)
        assert df.returncode == 0, df.stderr
        notes = [n for n in doc["data"]["notes"] if "tamer fleet df --hosts" in n]
        assert len(notes) == 1 and remote in notes[0] and "not read from here" in notes[0]
        plan = eng.tamer("-H", remote, "plan", "--json")
        assert any("tamer fleet df --hosts" in w for w in json.loads(plan.stdout)["data"]["warnings"])
        local = json.loads(eng.tamer("df", "--json").stdout)["data"]["notes"]
        assert not any("tamer fleet" in n for n in local)  # the socket on this machine: all read here
    finally:
        stop.set()


def test_fleet_history_rows_are_each_host_s_own_history(fleet: Fleet, tmp_path: Path) -> None:
    a = fleet.hosts["a"]
    for _ in range(2):
        assert a.tamer("record").returncode == 0
    hosts = fleet.hosts_file(tmp_path / "hosts.toml")
    rc, doc = _fleet("fleet", "history", "--hosts", str(hosts), "--since", "1d", cwd=tmp_path)
    assert rc == 0, doc
    rows = _by_name(doc)
    for name, host in fleet.hosts.items():
        own = json.loads(host.tamer("history", "--json", "--since", "1d").stdout)["data"]
        assert rows[name]["envelope"]["data"]["snapshots"] == own["snapshots"], name
    assert rows["a"]["envelope"]["data"]["snapshots"] >= 2
    human = subprocess.run(
        [sys.executable, "-m", "tamer", "fleet", "history", "--hosts", str(hosts)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert human.returncode == 0 and "SNAPSHOTS" in human.stdout and "TOTAL (3 of 3 hosts)" in human.stdout


def test_clean_plan_id_never_finishes_another_plan_s_interrupted_run(eng: Any, tmp_path: Path) -> None:
    """`tamer clean --plan-id ID` (what fleet clean sends): an unfinished run of another plan is not finished
    in its place; the same plan's unfinished run is (resuming what was agreed to)."""
    # Container steps run up to apply.REMOVAL_WORKERS at a time: the kill after the first removal can
    # land while others are in flight, so the plan holds more containers than that bound and the test
    # compares what the refused run left with what the kill left (not with a fixed count).
    from tamer.apply import REMOVAL_WORKERS

    # (several times the bound: the clean-clone run under load once saw the first step end after every
    # other had, so the kill left nothing to compare)
    names = {f"planid-{i}" for i in range(4 * REMOVAL_WORKERS + 2)}
    for name in sorted(names):
        eng.docker("create", "--name", name, BUSYBOX, "true")
    saved = tmp_path / "plan.json"
    made = eng.tamer("plan", "-o", str(saved), "--json")
    plan_id = json.loads(made.stdout)["data"]["plan_id"]
    killed = eng.tamer("clean", "--plan", str(saved), "--apply", "--yes", fault="clean.0.after")
    assert killed.returncode == 137

    def present() -> set[str]:
        return names & set(eng.docker("ps", "-a", "--format", "{{.Names}}").split())

    def settled() -> set[str]:
        # a DELETE sent before the kill can still be finishing in the engine (the clean-clone run once saw
        # one more container go after this first look): wait until two looks a second apart agree
        import time

        last = present()
        for _ in range(30):
            time.sleep(1)
            now = present()
            if now == last:
                return now
            last = now
        return last

    after_kill = settled()
    assert after_kill and len(after_kill) < len(names)  # the kill came after a removal, mid-run
    other = eng.tamer("clean", "--apply", "--yes", "--json", "--plan", str(saved), "--plan-id", "0" * 16)
    doc = json.loads(other.stdout)
    assert other.returncode == 2 and "did not finish" in doc["errors"][0] and plan_id in doc["errors"][0]
    assert present() == after_kill  # refused: nothing more removed
    same = eng.tamer("clean", "--apply", "--yes", "--json", "--plan", str(saved), "--plan-id", plan_id)
    assert same.returncode == 0, same.stdout
    assert not present()


def _user_ssh(fleet: Fleet, folder: Path) -> dict[str, str]:
    """An environment whose `ssh` is OpenSSH reading a user's ~/.ssh/config that names the fleet's hosts.

    OpenSSH finds ~/.ssh/config through the password database, not $HOME, so the test's config is given
    by a wrapper `ssh` first on PATH (as `-F`); it also logs each command line, so the test sees that
    tamer went through OpenSSH. Host aliases (tamer-a, ...) resolve only through this config.
    """
    folder.mkdir()
    config = folder / "ssh_config"
    lines = []
    for name, h in fleet.hosts.items():
        lines += [f"Host tamer-{name}", "  HostName 127.0.0.1", f"  Port {h.port}", "  User root", ""]
    lines += ["Host *", f"  IdentityFile {fleet.key}", f"  UserKnownHostsFile {fleet.known_hosts}"]
    lines += ["  StrictHostKeyChecking yes", "  IdentitiesOnly yes", ""]
    config.write_text("\n".join(lines))
    log = folder / "ssh.log"
    wrapper = folder / "ssh"
    wrapper.write_text(f'#!/bin/sh\necho "$*" >> {log}\nexec /usr/bin/ssh -F {config} "$@"\n')
    wrapper.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "DOCKER_HOST"}
    return {**env, "PATH": f"{folder}:{os.environ.get('PATH', '/usr/bin:/bin')}"}


def _tamer_env(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tamer", *args], capture_output=True, text=True, env=env, timeout=300
    )


def test_dash_H_ssh_reads_that_host_s_engine_through_openssh(fleet: Fleet, tmp_path: Path) -> None:
    b = fleet.hosts["b"]
    env = _user_ssh(fleet, tmp_path / "ssh")
    b.docker("create", "--name", "over-ssh-b", BUSYBOX, "true")
    try:
        df = _tamer_env(env, "-H", "ssh://tamer-b", "df", "--json")
        assert df.returncode == 0, df.stderr
        doc = json.loads(df.stdout)["data"]
        assert doc["host"] == "ssh://tamer-b"
        assert "over-ssh-b" in {x["name"] for x in doc["needs_decision"]}  # b's engine, not this one's
        own = json.loads(b.tamer("df", "--json").stdout)["data"]
        for kind in ("image", "container", "volume"):
            mine, theirs = (next(t for t in d["totals"] if t["kind"] == kind) for d in (doc, own))
            assert mine["count"] == theirs["count"], kind
        notes = [n for n in doc["notes"] if "tamer fleet df --hosts" in n]
        assert len(notes) == 1 and "ssh://tamer-b" in notes[0] and "not read from here" in notes[0]
        # through the user's OpenSSH, its config's Port and User (no -p 22 forced), one login for the whole df
        logged = (tmp_path / "ssh" / "ssh.log").read_text().splitlines()
        assert len(logged) == 1 and logged[0].endswith("-- tamer-b docker system dial-stdio"), logged
        assert "-p" not in logged[0].split() and "BatchMode=yes" in logged[0]
        # the other reading commands through it: ls, record, history, metrics
        ls = _tamer_env(env, "-H", "ssh://tamer-b", "ls", "containers", "--json")
        assert "over-ssh-b" in ls.stdout, ls.stderr
        assert _tamer_env(env, "-H", "ssh://tamer-b", "record").returncode == 0
        history = json.loads(_tamer_env(env, "-H", "ssh://tamer-b", "history", "--json").stdout)["data"]
        assert history["snapshots"] >= 1 and history["host"] == "ssh://tamer-b"
        watch = _tamer_env(env, "-H", "ssh://tamer-b", "watch", "--once", "--since", "1h", "--json")
        assert watch.returncode == 0, watch.stdout + watch.stderr  # the engine's event stream, through ssh
        metrics = _tamer_env(env, "-H", "ssh://tamer-b", "metrics")
        assert metrics.returncode == 0 and 'tamer_owner_bytes{owner="container:over-ssh-b"' in metrics.stdout
    finally:
        b.docker("rm", "-f", "over-ssh-b", check=False)


def test_dash_H_ssh_errors_say_what_ssh_said_and_offer_the_fleet(fleet: Fleet, tmp_path: Path) -> None:
    env = _user_ssh(fleet, tmp_path / "ssh")
    down = _closed_port()
    df = _tamer_env(env, "-H", f"ssh://root@127.0.0.1:{down}", "df", "--json")
    doc = json.loads(df.stdout)
    assert df.returncode == 1 and doc["status"] == "error", df.stdout
    assert "Connection refused" in doc["errors"][0] and "tamer fleet df --hosts" in doc["errors"][0]
    # a key the host does not know: ssh's refusal, not a hang and not a password prompt
    stranger = _tamer_env(env, "-H", f"ssh://nobody-here@127.0.0.1:{fleet.hosts['a'].port}", "df", "--json")
    assert stranger.returncode == 1 and "Permission denied" in json.loads(stranger.stdout)["errors"][0]
    for bad in ("ssh://[::1", "ssh://a b", "ssh://-oProxyCommand=touch%20x", "ssh://h:99999", "ssh://u:pw@h"):
        out = _tamer_env(env, "-H", bad, "df", "--json")
        assert (
            out.returncode == 2 and "expected ssh://[user@]host[:port]" in json.loads(out.stdout)["errors"][0]
        )
    # nothing was run for the malformed ones: only the two attempts above reached ssh
    assert len((tmp_path / "ssh" / "ssh.log").read_text().splitlines()) == 2


def test_dash_H_ssh_clean_keeps_named_volumes_it_cannot_back_up_and_says_so(
    fleet: Fleet, tmp_path: Path
) -> None:
    b = fleet.hosts["b"]
    env = _user_ssh(fleet, tmp_path / "ssh")
    b.docker("volume", "create", "ssh-named")
    b.docker("run", "--rm", "-v", "ssh-named:/d", BUSYBOX, "sh", "-c", "echo keep > /d/f")
    b.docker("create", "--name", "ssh-user", BUSYBOX, "true")
    policy = tmp_path / "policy.toml"
    policy.write_text(
        'version = 1\n[containers]\nstates = ["created"]\nolder_than = "0s"\n'
        '[images]\ndangling = false\n[[volumes.named]]\nnames = ["ssh-named"]\nolder_than = "0s"\n'
    )
    try:
        clean = _tamer_env(
            env, "-H", "ssh://tamer-b", "clean", "--policy", str(policy), "--apply", "--yes", "--json"
        )
        steps = {x["name"]: x for x in json.loads(clean.stdout)["data"]["steps"]}
        assert steps["ssh-user"]["status"] == "done"  # the container went, through ssh
        assert "ssh-user" not in b.docker("ps", "-a", "--format", "{{.Names}}").split()
        # the volume's folder is on b: no backup is read from this machine, so it is kept, and said so
        kept = steps["ssh-named"]
        assert kept["status"] == "skipped" and kept["code"] == "backup-failed", kept
        assert "volume kept" in kept["detail"] and "not on this machine" in kept["detail"]
        assert "ssh-named" in b.docker("volume", "ls", "-q").split()
        assert b.docker("run", "--rm", "-v", "ssh-named:/d", BUSYBOX, "cat", "/d/f").strip() == "keep"
        archive = tmp_path / "b.tar.zst"
        backup = _tamer_env(env, "-H", "ssh://tamer-b", "volume", "backup", "ssh-named", "-o", str(archive))
        assert backup.returncode == 1 and "not on this machine" in backup.stderr and not archive.exists()
    finally:
        b.docker("rm", "-f", "ssh-user", check=False)
        b.docker("volume", "rm", "-f", "ssh-named", check=False)
