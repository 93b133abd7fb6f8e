"""`-H ssh://[user@]host[:port]`: an engine on another machine, reached through the user's own OpenSSH.

Each connection is one `ssh ... -- HOST docker system dial-stdio` (what `docker -H ssh://` runs): the
remote docker CLI relays the connection to the engine its login's DOCKER_HOST (or default socket) names.

Why OpenSSH (docker-py's `use_ssh_client`) and not paramiko: it is the ssh the user already runs, so
everything in ~/.ssh/config applies (Host aliases, Port, ProxyJump, Include/Match, ControlMaster), as do
the agent, certificates, hardware keys and known_hosts with its policy, exactly as for `ssh HOST` and
`tamer fleet`; docker-py's paramiko path reads five keys of the config and trusts only ~/.ssh/known_hosts.

Why tamer's own connection class rather than docker-py's shell-out socket (7.x), which: reads ssh's stdout
pipe with no timeout (an ssh that connects and then stalls, or a hung engine behind it, hangs tamer for
ever); always passes `-p 22` when the address names no port (so the config's Port is ignored); splits
the address at every ':' (ssh://[::1] fails); starts a new ssh login for every request and never waits
for it; and lets ssh prompt on the terminal in the middle of tamer's output. Here the ssh child talks over
one end of a socketpair, so the socket timeouts docker-py sets apply to every read and a kept-alive
connection is reused, and ssh runs with BatchMode (a key or an agent, never a password prompt) in its
own session (Ctrl-C reaches tamer, which stops cleanly, not ssh mid-request). What ssh says on stderr is
kept, and a connection that breaks is explained with it (why_ssh_failed).
"""

from __future__ import annotations

import socket
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    import docker

CONNECT_TIMEOUT_S = 15  # as ANSWER_TIMEOUT_S: a host that does not even answer the TCP handshake
SERVER_ALIVE_INTERVAL_S = 15  # a host that dies mid-request is noticed (as tamer fleet does)
SERVER_ALIVE_COUNT = 4
REMOTE_COMMAND = "docker system dial-stdio"
_STDERR_KEPT = 2000  # characters of ssh's stderr quoted in an error


@dataclass(frozen=True)
class SshAddress:
    """Who logs in where; user and port None: the user's ssh config (or ssh's defaults) decides."""

    user: str | None
    host: str
    port: int | None


def parse_address(where: str) -> SshAddress:
    """`ssh://[user@]host[:port]` checked as `tamer fleet` checks its hosts; UsageError otherwise.

    >>> parse_address("ssh://admin@web1:2222")
    SshAddress(user='admin', host='web1', port=2222)
    """
    from tamer.fleet.hosts import parse_url  # the one parser of ssh:// addresses (pure, no effects)

    user, host, port = parse_url(where, "-H/--host")
    return SshAddress(user, host, port)


def ssh_argv(address: SshAddress, ssh: str = "ssh") -> list[str]:
    """The ssh command of one connection (pure). The host goes after `--`: never read as an option.

    >>> ssh_argv(SshAddress("admin", "web1", None))[-3:]
    ['--', 'web1', 'docker system dial-stdio']
    """
    argv = [ssh, "-T", "-x", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={CONNECT_TIMEOUT_S}"]
    argv += [
        "-o",
        f"ServerAliveInterval={SERVER_ALIVE_INTERVAL_S}",
        "-o",
        f"ServerAliveCountMax={SERVER_ALIVE_COUNT}",
    ]
    if address.port is not None:
        argv += ["-p", str(address.port)]
    if address.user is not None:
        argv += ["-l", address.user]
    return [*argv, "--", address.host, REMOTE_COMMAND]


class _Dial:
    """One ssh child relaying one connection; its stderr kept in a file (read when something broke)."""

    def __init__(self, argv: list[str]) -> None:
        ours, theirs = socket.socketpair()
        self.stderr: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 (kept open while ssh runs)
        try:
            self.proc = subprocess.Popen(
                argv,
                stdin=theirs.fileno(),
                stdout=theirs.fileno(),
                stderr=self.stderr,
                start_new_session=True,
                close_fds=True,
            )
        except FileNotFoundError:
            ours.close()
            self.stderr.close()
            raise ConnectionError(
                f"the OpenSSH client ({argv[0]}) is not installed on this machine: -H ssh:// runs it "
                "(Debian: apt-get install openssh-client)"
            ) from None
        except BaseException:
            ours.close()
            self.stderr.close()
            raise
        finally:
            theirs.close()  # ssh holds its end now: when ssh exits, our end reads EOF
        self.sock = _DialSocket(ours)

    def finish(self, wait: float = 2.0) -> None:
        """Close our end (ssh then ends the remote side and exits); make sure ssh is gone."""
        self.sock.close()
        try:
            self.proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def failure(self, wait: float) -> str | None:
        """What ssh said, if it exited with an error (waiting up to `wait` seconds for it to exit)."""
        try:
            code = self.proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            return None
        if code == 0:
            return None
        try:
            self.stderr.seek(0)
            said = self.stderr.read().decode(errors="replace").strip()
        except (OSError, ValueError):
            said = ""
        said = "".join(ch if ch.isprintable() or ch == "\n" else "?" for ch in said)[-_STDERR_KEPT:]
        return f"ssh exited with status {code}" + (f": {said}" if said else " and said nothing")


class _DialSocket(socket.socket):
    """Our end of the socketpair, whose files name it as `channel` (where docker-py's streams look for it)."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(sock.family, sock.type, sock.proto, fileno=sock.detach())

    def makefile(self, *args: Any, **kwargs: Any) -> Any:
        f = super().makefile(*args, **kwargs)
        f.channel = self
        return f


_dials: dict[str, list[_Dial]] = {}
_dials_lock = threading.Lock()


def why_ssh_failed(where: str, wait: float = 1.0) -> str | None:
    """What ssh said when the last connection to `where` that failed did, or None (nothing failed).

    Used by the error translator: a broken connection reads as "the engine closed it", and ssh's own
    words ("Connection refused", "Permission denied (publickey)", "Host key verification failed",
    "docker: command not found" from the remote shell) say why.
    """
    with _dials_lock:
        dials = list(_dials.get(where, ()))
    for dial in reversed(dials):  # one that has failed already (the healthy ones are not waited for)
        said = dial.failure(0)
        if said is not None:
            return said
    return dials[-1].failure(wait) if dials else None  # the newest, which may be exiting right now


def _dial(where: str, argv: list[str]) -> _DialSocket:
    dial = _Dial(argv)
    with _dials_lock:
        kept = _dials.setdefault(where, [])
        kept.append(dial)
        for old in [d for d in kept[:-16] if d.proc.poll() is not None]:  # keep the record bounded
            kept.remove(old)
            old.stderr.close()
    return dial.sock


def docker_py_client(
    where: str, *, timeout: float, max_pool_size: int, version: str = "auto"
) -> docker.APIClient:
    """docker-py's client for `where` (ssh://...), its connections made through OpenSSH (see the module)."""
    import docker
    import urllib3.connection
    import urllib3.connectionpool
    from docker.transport.basehttpadapter import BaseHTTPAdapter

    argv = ssh_argv(parse_address(where))
    address = where

    class Connection(urllib3.connection.HTTPConnection):
        def connect(self) -> None:
            sock = _dial(address, argv)
            sock.settimeout(self.timeout if isinstance(self.timeout, int | float) else None)
            self.sock = sock

    class Pool(urllib3.connectionpool.HTTPConnectionPool):
        ConnectionCls = Connection

    class Adapter(BaseHTTPAdapter):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.pool = Pool("localhost", timeout=timeout, maxsize=max_pool_size)

        def get_connection(self, url: str, proxies: Any = None) -> Pool:
            return self.pool

        def request_url(self, request: Any, proxies: Any) -> str:
            return str(request.path_url)

        def close(self) -> None:
            super().close()
            self.pool.close()

    # version fixed at first so that docker-py asks nothing through its own ssh socket before ours is in
    api = docker.APIClient(
        base_url=where,
        version="1.41" if version == "auto" else version,
        timeout=timeout,
        use_ssh_client=True,
        max_pool_size=max_pool_size,
    )
    adapter = Adapter()
    api._custom_adapter = adapter
    api.mount("http+docker://ssh", adapter)
    if version == "auto":
        api._version = str(api.version(api_version=False)["ApiVersion"])
    return api
