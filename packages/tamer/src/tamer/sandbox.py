"""A private, throwaway Docker engine and locally built images.

Used by the integration tests, `make demo` and the benchmarks: no registry is
reachable there, so images are built from the host's static busybox through
`docker import`. The engine gets its own data-root, exec-root, socket, pidfile
and containerd namespace, so it never touches the user's default engine.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import subprocess
import tarfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from tamer.engine import Engine, connect
from tamer.errors import EngineUnreachable, TamerError

BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")
# The applets our images need; a shell, coreutils and sleep are enough.
APPLETS = (
    "sh",
    "ls",
    "cat",
    "echo",
    "sleep",
    "du",
    "dd",
    "mkdir",
    "rm",
    "cp",
    "head",
    "seq",
    "touch",
    "true",
    "false",
    "wc",
    "yes",
    "sync",
    "ln",
    "stat",
    "find",
    "xargs",
    "tar",
    "sha256sum",
    "mv",
    "chmod",
    "chown",
    "env",
    "test",
    "printf",
    "base64",
    "id",
    "date",
    "kill",
)


class SandboxError(TamerError):
    """The private engine could not be started or stopped."""


def find_busybox() -> str | None:
    """Path of a static busybox on this host, or None."""
    for cand in BUSYBOX_CANDIDATES:
        if os.path.isfile(cand):
            return cand
    return shutil.which("busybox")


def busybox_rootfs_tar(extra_files: dict[str, bytes] | None = None) -> bytes:
    """A root filesystem tarball holding busybox, its applet links and `extra_files`."""
    busybox = find_busybox()
    if busybox is None:
        raise SandboxError(
            "no busybox binary found; install Debian's busybox-static (`apt-get install busybox-static`)"
        )
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for d in ("bin", "tmp", "etc", "data"):
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777 if d == "tmp" else 0o755
            tar.addfile(info)
        tar.add(busybox, arcname="bin/busybox")
        for applet in APPLETS:
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type = tarfile.SYMTYPE
            link.linkname = "busybox"
            tar.addfile(link)
        for name, data in (extra_files or {}).items():
            info = tarfile.TarInfo(name.lstrip("/"))
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def build_busybox_image(
    engine: Engine,
    ref: str,
    *,
    volumes: tuple[str, ...] = (),
    cmd: tuple[str, ...] = ("sh",),
    labels: dict[str, str] | None = None,
    extra_files: dict[str, bytes] | None = None,
) -> str:
    """Build `ref` (repo:tag) from busybox; `volumes` are declared like the mongo image's VOLUMEs.

    Returns the image id. Example: build_busybox_image(engine, "mongo-standin:1",
    volumes=("/data/db", "/data/configdb")) makes an image that, run without -v,
    silently creates two anonymous volumes, as mongo does.
    """
    repo, _, tag = ref.rpartition(":")
    if not repo:
        repo, tag = ref, "latest"
    changes = [f"CMD {list_json(cmd)}"]
    if volumes:
        changes.append(f"VOLUME {list_json(volumes)}")
    for key, value in (labels or {}).items():
        changes.append(f"LABEL {key}={value}")
    return engine.import_image(busybox_rootfs_tar(extra_files), repo, tag, changes)


def list_json(items: tuple[str, ...]) -> str:
    return "[" + ", ".join('"' + s.replace('"', '\\"') + '"' for s in items) + "]"


def mongo_standin(engine: Engine, ref: str = "mongo-standin:1") -> str:
    """An image declaring VOLUME /data/db and /data/configdb, as the official mongo image does."""
    return build_busybox_image(
        engine,
        ref,
        volumes=("/data/db", "/data/configdb"),
        cmd=("sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"),
    )


def why_no_private_engine() -> str | None:
    """None when this host can start a private engine, else the reason it cannot."""
    if os.geteuid() != 0:
        return "starting a private Docker engine needs root (dockerd runs as root here)"
    if shutil.which("dockerd") is None:
        return "dockerd is not installed (Debian: `apt-get install docker.io`; `make test` does this as root)"
    if find_busybox() is None:
        return "busybox is not installed (Debian: `apt-get install busybox-static`)"
    return None


@dataclass
class PrivateEngine:
    """A dockerd of our own under `base`. Use as a context manager or call start()/stop().

    Example:
        >>> with PrivateEngine.create() as sandbox:  # doctest: +SKIP
        ...     engine = sandbox.engine
    """

    base: Path
    namespace: str
    process: subprocess.Popen[bytes] | None = None
    _engine: Engine | None = field(default=None, repr=False)

    @classmethod
    def create(cls, base: Path | None = None) -> PrivateEngine:
        # Unix socket paths are limited to ~108 bytes: keep the base short.
        ns = "tamer-" + uuid.uuid4().hex[:8]
        base = base or Path("/tmp") / ns
        base.mkdir(parents=True, exist_ok=True)
        return cls(base=base, namespace=ns)

    @property
    def host(self) -> str:
        return f"unix://{self.base / 'docker.sock'}"

    @property
    def data_root(self) -> Path:
        return self.base / "data"

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            raise SandboxError("the private engine is not started")
        return self._engine

    def start(self, timeout: float = 60.0) -> Engine:
        reason = why_no_private_engine()
        if reason:
            raise SandboxError(reason)
        log = open(self.base / "dockerd.log", "ab")  # noqa: SIM115 - kept open for the daemon's lifetime
        cmd = [
            "dockerd",
            "--data-root",
            str(self.data_root),
            "--exec-root",
            str(self.base / "exec"),
            "--pidfile",
            str(self.base / "docker.pid"),
            "-H",
            self.host,
            "--bridge",
            "none",
            "--iptables=false",
            "--ip-masq=false",
            "--ip6tables=false",
            "--containerd-namespace",
            self.namespace,
            "--containerd-plugins-namespace",
            self.namespace + "-p",
        ]
        if not _dockerd_knows("--ip6tables"):
            cmd.remove("--ip6tables=false")
        self.process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = (self.base / "dockerd.log").read_text(errors="replace")[-2000:]
                raise SandboxError(f"dockerd exited with {self.process.returncode}; its log ends:\n{tail}")
            try:
                self._engine = connect(self.host, timeout=60)
                return self._engine
            except EngineUnreachable as exc:
                last = exc
                time.sleep(0.2)
        self.stop()
        raise SandboxError(f"dockerd did not answer within {timeout:.0f}s: {last}")

    def stop(self, timeout: float = 30.0) -> None:
        """Stop dockerd (and its containerd), then delete everything under `base`."""
        proc = self.process
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        self.process = None
        self._engine = None
        _unmount_below(self.base)
        shutil.rmtree(self.base, ignore_errors=True)

    def restart(self, timeout: float = 60.0) -> Engine:
        """Stop and start dockerd on the same data-root (the data survives)."""
        proc = self.process
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
        return self.start(timeout)

    def __enter__(self) -> PrivateEngine:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _dockerd_knows(flag: str) -> bool:
    try:
        out = subprocess.run(["dockerd", "--help"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return False
    return flag in out


def _unmount_below(base: Path) -> None:
    """Unmount anything a killed dockerd left mounted under `base` (deepest first)."""
    try:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return
    prefix = str(base.resolve()) + "/"
    targets = [line.split()[1].encode().decode("unicode_escape") for line in mounts]
    for target in sorted((t for t in targets if t.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-l", target], capture_output=True, check=False)
