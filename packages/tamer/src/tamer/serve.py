"""`tamer serve`: /metrics for Prometheus and / (a one-page status) over HTTP, from the latest snapshot.

A scrape never walks the disk: a background thread takes a snapshot every `refresh` seconds (the next
one starts `refresh` after the previous one ended, so walks never overlap on a slow host) and each
request renders the latest one. The snapshot's age is measured on the monotonic clock, so a wall-clock
jump (NTP, a VM resumed) neither hides a stale snapshot nor makes a fresh one look old. A refresh that
fails (the engine restarting) keeps the previous snapshot, says so on stderr and in
`tamer_snapshot_refresh_ok 0`, and the next refresh tries again.

The socket is bound before anything else happens: a port in use or an address this host does not have
is an error (ServeBindFailed, exit 1) before the engine is asked anything, and nothing is started.
"""

from __future__ import annotations

import errno
import gzip
import html
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tamer.errors import TamerError, UsageError
from tamer.metrics import CONTENT_TYPE, CleanFacts, Freshness, render_metrics, valid_utf8

MAX_PORT = 65535


class ServeBindFailed(TamerError):
    """The address `--listen` names cannot be listened on: in use, not on this host, or not allowed."""


def parse_listen(text: str) -> tuple[str, int]:
    """ "127.0.0.1:9470", "[::1]:9470", "localhost:9470", "0.0.0.0:9470" -> (host, port).

    The host is required (listening on every interface is a choice to write down: 0.0.0.0); port 0
    asks the system for a free one (the address served is printed). Raises UsageError.
    """
    shown = text if len(text) <= 60 else text[:57] + "..."
    expected = "expected HOST:PORT, e.g. 127.0.0.1:9470 or [::1]:9470"
    host, sep, port_text = text.strip().rpartition(":")
    if not sep or not host or not port_text:
        raise UsageError(f"bad --listen {shown!r}: {expected}")
    if host.startswith("["):
        if not host.endswith("]") or len(host) < 3:
            raise UsageError(f"bad --listen {shown!r}: {expected}")
        host = host[1:-1]
    elif ":" in host:
        raise UsageError(f"bad --listen {shown!r}: an IPv6 address goes in brackets, e.g. [::1]:9470")
    if not port_text.isascii() or not port_text.isdigit() or int(port_text) > MAX_PORT:
        raise UsageError(f"bad --listen {shown!r}: the port must be a number from 0 to {MAX_PORT}")
    return host, int(port_text)


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a slow client never keeps tamer from stopping
    # a restart right after a stop binds (TIME_WAIT); a live listener still refuses (Linux)
    allow_reuse_address = True


class _Server6(_Server):
    address_family = socket.AF_INET6


def bind(host: str, port: int) -> ThreadingHTTPServer:
    """A listening HTTP server on (host, port) that serves nothing yet (attach a Keeper with serve_on).

    Raises ServeBindFailed (in use, not this host's address, not allowed) or UsageError (a host name that
    does not resolve)."""
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        raise UsageError(
            f"--listen {where}: the host does not resolve ({exc}); expected an address of this machine, "
            "e.g. 127.0.0.1:9470; nothing was started"
        ) from None
    family, address = infos[0][0], (str(infos[0][4][0]), int(infos[0][4][1]))
    server_class = _Server6 if family == socket.AF_INET6 else _Server
    try:
        return server_class(address, _Handler, bind_and_activate=True)
    except OSError as exc:
        why = {
            errno.EADDRINUSE: "is already in use (another tamer serve or another program listens there)",
            errno.EADDRNOTAVAIL: "is not an address of this machine",
            errno.EACCES: "may not be used by this user (ports below 1024 need privileges)",
        }.get(exc.errno or 0, f"cannot be listened on ({exc.strerror or exc})")
        raise ServeBindFailed(
            f"--listen {where} {why}; pick another address or port with --listen HOST:PORT; "
            "nothing was started"
        ) from None


@dataclass(frozen=True)
class Current:
    """The latest snapshot and journal facts, and when (monotonic seconds) they were taken."""

    snapshot: Any  # tamer.snapshots.Snapshot
    clean: CleanFacts
    taken_monotonic: float


Refresher = Callable[[], tuple[Any, CleanFacts]]


class Keeper:
    """Holds the latest snapshot; a background thread replaces it every `refresh` seconds.

    refresh_once() is the step the thread repeats; tests call it directly. `log` gets one line per
    failed refresh (stderr in the CLI).
    """

    def __init__(
        self,
        refresher: Refresher,
        refresh: float,
        *,
        limit: int,
        version: str = "",
        log: Callable[[str], None] = lambda line: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.refresher = refresher
        self.refresh = refresh
        self.limit = limit
        self.version = version
        self.log = log
        self.clock = clock
        self.failures = 0
        self.last_ok: bool | None = None
        self.last_error = ""
        self._current: Current | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def seed(self, snapshot: Any, clean: CleanFacts, taken_monotonic: float) -> None:
        """Serve this snapshot until the first refresh ends (the one recorded last time, at start)."""
        with self._lock:
            if self._current is None:
                self._current = Current(snapshot, clean, taken_monotonic)

    def refresh_once(self) -> bool:
        try:
            snapshot, clean = self.refresher()
        except Exception as exc:  # the engine went away, a walk failed: keep serving the last one
            with self._lock:
                self.failures += 1
                self.last_ok = False
                self.last_error = str(exc) if isinstance(exc, TamerError) else f"{type(exc).__name__}: {exc}"
            self.log(f"refresh failed, still serving the previous snapshot: {self.last_error}")
            return False
        with self._lock:
            self._current = Current(snapshot, clean, self.clock())
            self.last_ok = True
            self.last_error = ""
        return True

    def current(self) -> Current | None:
        with self._lock:
            return self._current

    def start(self) -> None:
        def loop() -> None:
            while not self._stop.is_set():
                self.refresh_once()
                self._stop.wait(self.refresh)

        self._thread = threading.Thread(target=loop, name="tamer-refresh", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def metrics_text(self) -> str | None:
        cur = self.current()
        if cur is None:
            return None
        with self._lock:
            fresh = Freshness(self.clock() - cur.taken_monotonic, self.last_ok, self.failures)
        return render_metrics(
            cur.snapshot, cur.clean, now=time.time(), limit=self.limit, freshness=fresh, version=self.version
        )

    def status_html(self) -> str:
        from tamer.report.metrics_page import render_status_page

        cur = self.current()
        with self._lock:
            error = self.last_error
        if cur is None:
            return render_status_page(None, None, age=None, refresh=self.refresh, error=error)
        return render_status_page(
            cur.snapshot,
            cur.clean,
            age=self.clock() - cur.taken_monotonic,
            refresh=self.refresh,
            error=error,
        )


class _Handler(BaseHTTPRequestHandler):
    server_version = "tamer"
    protocol_version = "HTTP/1.1"
    timeout = 30  # a client that connects and sends nothing does not hold a thread forever

    def do_GET(self) -> None:
        self._answer(body=True)

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def _answer(self, body: bool) -> None:
        keeper: Keeper = self.server.keeper  # type: ignore[attr-defined]
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            text = keeper.metrics_text()
            if text is None:
                self._send(
                    503, "text/plain; charset=utf-8", "the first snapshot is still being taken\n", body
                )
            else:
                self._send(200, CONTENT_TYPE, text, body)
        elif path == "/":
            self._send(200, "text/html; charset=utf-8", keeper.status_html(), body)
        else:
            self._send(
                404, "text/plain; charset=utf-8", f"no page {html.escape(path)}: try /metrics or /\n", body
            )

    def _send(self, code: int, content_type: str, text: str, body: bool) -> None:
        data = valid_utf8(text).encode("utf-8")  # a name with an odd byte must not break the page
        gzipped = _accepts_gzip(self.headers.get("Accept-Encoding", "")) and len(data) > 1024
        if gzipped:  # Prometheus asks for it; 500 volumes of text shrink ~10x
            data = gzip.compress(data, compresslevel=5)
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        if gzipped:
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Vary", "Accept-Encoding")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        if code == 503:
            self.send_header("Retry-After", "5")
        self.end_headers()
        if body:
            self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # a scrape every few seconds is not news; failures are logged by the Keeper


def _accepts_gzip(header: str) -> bool:
    for part in header.split(","):
        name, _, params = part.strip().partition(";")
        if name.strip().lower() == "gzip":
            return params.replace(" ", "").lower() not in ("q=0", "q=0.0", "q=0.00", "q=0.000")
    return False


def serve_on(server: ThreadingHTTPServer, keeper: Keeper) -> threading.Thread:
    """Start answering requests on `server` from `keeper` (in a thread); stop with server.shutdown()."""
    server.keeper = keeper  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
    thread.start()
    return thread


def served_address(server: ThreadingHTTPServer) -> str:
    host, port = server.server_address[:2]
    host = str(host)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def log_to_stderr(line: str) -> None:
    print(f"tamer serve: {line}", file=sys.stderr, flush=True)
