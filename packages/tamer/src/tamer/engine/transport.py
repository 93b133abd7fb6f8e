"""A lean read path to a local engine: JSON over HTTP on its unix socket, with the standard library.

Importing the docker SDK (and requests, urllib3) costs about 60 ms, more than a `docker ps -a`
on a small host; `tamer ls` and `tamer df` only read JSON, so on a unix socket they use this
instead. The SDK stays for what it earns its keep on: tcp/TLS/ssh hosts, streams (events),
uploads (image import) and every mutation. Errors raised here (EngineHTTPError, OSError,
TimeoutError) are turned into TamerError by the one translator, tamer.engine.errors.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
from typing import Any
from urllib.parse import quote, urlencode

Params = dict[str, Any] | list[tuple[str, Any]]


class EngineHTTPError(Exception):
    """The engine answered with an HTTP error status; `explanation` is its own message."""

    def __init__(self, status: int, explanation: str, path: str) -> None:
        super().__init__(f"{status} for {path}: {explanation}")
        self.status = status
        self.explanation = explanation
        self.path = path


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, socket_path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = socket_path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self.socket_path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


class UnixTransport:
    """GET requests returning decoded JSON; safe to share between threads (a small connection pool)."""

    def __init__(self, socket_path: str, *, timeout: float) -> None:
        self.socket_path = socket_path
        self.timeout = timeout
        self.prefix = ""  # "/v1.43" once the API version is known
        self._idle: list[_UnixConnection] = []
        self._lock = threading.Lock()

    def get(self, path: str, params: Params | None = None, *, timeout: float | None = None) -> Any:
        """GET `path` (e.g. "/containers/json") with query `params`; the decoded JSON body."""
        url = self.prefix + quote(path, safe="/:@")
        if params:
            pairs = params.items() if isinstance(params, dict) else params
            url += "?" + urlencode([(k, v) for k, v in pairs if v is not None])
        conn, reused = self._take(timeout)
        try:
            try:
                conn.request("GET", url, headers={"Accept": "application/json"})
                response = conn.getresponse()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                if not reused:
                    raise
                # the engine closed a kept-alive connection while it sat idle: once more, afresh
                conn.close()
                conn = _UnixConnection(self.socket_path, conn.timeout or self.timeout)
                conn.request("GET", url, headers={"Accept": "application/json"})
                response = conn.getresponse()
            body = response.read()
        except BaseException:
            conn.close()
            raise
        if response.will_close:
            conn.close()
        else:
            self._give_back(conn)
        if response.status >= 400:
            raise EngineHTTPError(response.status, _message(body), path)
        return json.loads(body) if body else None

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def _take(self, timeout: float | None) -> tuple[_UnixConnection, bool]:
        wanted = self.timeout if timeout is None else timeout
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            return _UnixConnection(self.socket_path, wanted), False
        conn.timeout = wanted
        if conn.sock is not None:
            conn.sock.settimeout(wanted)
        return conn, True

    def _give_back(self, conn: _UnixConnection) -> None:
        with self._lock:
            if len(self._idle) < 16:
                self._idle.append(conn)
                return
        conn.close()


def _message(body: bytes) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        return body.decode(errors="replace").strip()
    if isinstance(data, dict) and "message" in data:
        return str(data["message"])
    return body.decode(errors="replace").strip()
