"""Running tamer on the hosts of a fleet over OpenSSH: the only part of `tamer fleet` with effects.

Each host gets one `ssh` process: `ssh -n -T -o BatchMode=yes -o ConnectTimeout=N [-p PORT] [-l USER]
[ssh_options] -- HOST 'tamer df --json'`. BatchMode because nobody is there to type a password (a host
that would ask one fails at once instead of hanging); stdin is /dev/null so a remote command can never
read the user's terminal. The remote command line is quoted word by word for the remote shell: a policy
path with spaces or quotes reaches tamer as one argument. ssh's own exit status tells "could not connect"
(255) from "no such command" (127) from the remote tamer's exit code (0, 1, 2, 3, 130); aggregate.py
reads them.

At most `parallel` hosts are contacted at once; each command gets `timeout` seconds, after which its ssh
is killed (the host is reported as timed out, never dropped).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass

from tamer.errors import TamerError
from tamer.fleet.hosts import Host

SERVER_ALIVE_INTERVAL = 15  # seconds between keep-alives: a host that dies mid-command is noticed
SERVER_ALIVE_COUNT = 4
# What one host may send back. A real envelope of a host with 10,000 containers is a few MiB; a remote
# that prints without end (a broken login script, a hostile host) must not fill this machine's memory
# for --timeout seconds: past the limit its ssh is stopped and the host is a bad reply.
MAX_REPLY_BYTES = 256 * 1024 * 1024
STDERR_TAIL_BYTES = 64 * 1024  # only the end of stderr is kept (the message is at the end)


class SshMissing(TamerError):
    """The OpenSSH client is not installed on this machine."""


@dataclass(frozen=True)
class Reply:
    """What came back from one host. returncode None: ssh could not be started or was killed (timed_out)."""

    returncode: int | None
    stdout: str
    stderr: str
    seconds: float
    timed_out: bool = False
    overflowed: bool = False  # it sent more than MAX_REPLY_BYTES on stdout: stopped there


def remote_command(host: Host, args: Sequence[str]) -> str:
    """The command line the remote shell runs: the host's tamer words, then `args`, each quoted."""
    return shlex.join([*host.tamer, *args])


def ssh_argv(host: Host, args: Sequence[str], ssh: str = "ssh") -> list[str]:
    """The full ssh command for running tamer `args` on `host` (pure; see the module docstring).

    >>> from tamer.fleet.hosts import Host
    >>> ssh_argv(Host("web1", "ssh://admin@web1:2222", "web1", "admin", 2222), ["df", "--json"])[-2:]
    ['web1', 'tamer df --json']
    """
    argv = [
        ssh,
        "-n",
        "-T",
        "-o",
        "BatchMode=yes",
        "-o",
        f"ConnectTimeout={host.connect_timeout}",
        "-o",
        f"ServerAliveInterval={SERVER_ALIVE_INTERVAL}",
        "-o",
        f"ServerAliveCountMax={SERVER_ALIVE_COUNT}",
    ]
    if host.port is not None:
        argv += ["-p", str(host.port)]
    if host.user is not None:
        argv += ["-l", host.user]
    # the user's options come after ours: ssh keeps the first value it reads for an option, so they can
    # add keys and known-hosts files but cannot turn BatchMode off (a password prompt would hang the fleet)
    argv += [*host.ssh_options, "--", host.address, remote_command(host, args)]
    return argv


def find_ssh() -> str:
    ssh = shutil.which("ssh")
    if ssh is None:
        raise SshMissing(
            "the OpenSSH client (ssh) is not installed on this machine; `tamer fleet` runs tamer on each "
            "host through it: install it (Debian: apt-get install openssh-client) and run again; "
            "nothing was done"
        )
    return ssh


def run_on_host(
    host: Host, args: Sequence[str], *, timeout: float, ssh: str = "ssh", limit: int = MAX_REPLY_BYTES
) -> Reply:
    """Run tamer `args` on `host`; never raises for anything the host or the network does.

    At most `limit` bytes of stdout and the last STDERR_TAIL_BYTES of stderr are kept; past `limit` ssh
    is stopped (Reply.overflowed)."""
    started = time.monotonic()
    try:
        proc = subprocess.Popen(
            ssh_argv(host, args, ssh),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
    except OSError as exc:
        return Reply(None, "", f"ssh could not be started: {exc}", time.monotonic() - started)
    out: list[bytes] = []
    err = bytearray()
    overflowed = threading.Event()
    out_fd, err_fd = (proc.stdout.fileno(), proc.stderr.fileno()) if proc.stdout and proc.stderr else (-1, -1)

    def read_out() -> None:
        kept = 0
        while chunk := os.read(out_fd, 65536):
            kept += len(chunk)
            if kept > limit:
                overflowed.set()
                proc.kill()
                return
            out.append(chunk)

    def read_err() -> None:
        while chunk := os.read(err_fd, 65536):
            err.extend(chunk)
            del err[:-STDERR_TAIL_BYTES]

    readers = [threading.Thread(target=f, daemon=True) for f in (read_out, read_err)]
    for t in readers:
        t.start()
    timed_out = False
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        timed_out = True
    for t in readers:
        t.join(timeout=5)  # a child of ssh that kept the pipes open must not hold the fleet
    for t, pipe in zip(readers, (proc.stdout, proc.stderr), strict=True):
        if pipe is not None and not t.is_alive():  # never close an fd a reader still reads (reuse)
            pipe.close()
    stdout = b"".join(out)
    if overflowed.is_set():
        stdout = b""  # cut off mid-way: nothing of it is read as an envelope
    code = None if timed_out or overflowed.is_set() else proc.returncode
    return Reply(
        code,
        _text(stdout),
        _text(bytes(err)),
        time.monotonic() - started,
        timed_out=timed_out and not overflowed.is_set(),
        overflowed=overflowed.is_set(),
    )


def run_on_fleet(
    hosts: Sequence[Host],
    args_for: Callable[[Host], Sequence[str] | None],
    *,
    parallel: int,
    timeout: float,
    progress: Callable[[int, int], None] | None = None,
) -> list[Reply | None]:
    """Run each host's command (args_for(host); None: nothing to run there), `parallel` at a time.

    Returns the replies in the order of `hosts` (None where nothing was run).
    """
    ssh = find_ssh()
    todo = [(i, host, args_for(host)) for i, host in enumerate(hosts)]
    replies: list[Reply | None] = [None] * len(hosts)
    work = [(i, host, args) for i, host, args in todo if args is not None]
    if not work:
        return replies
    done = 0
    with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(work)))) as pool:
        futures = {
            pool.submit(run_on_host, host, args, timeout=timeout, ssh=ssh): i for i, host, args in work
        }
        for future in as_completed(futures):
            replies[futures[future]] = future.result()
            done += 1
            if progress is not None:
                progress(done, len(work))
    return replies


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data if isinstance(data, str) else data.decode("utf-8", errors="replace")
