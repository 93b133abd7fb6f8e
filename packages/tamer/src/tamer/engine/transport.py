"""A lean read path to a local engine: JSON over HTTP on its unix socket, with the standard library.

Importing the docker SDK (and requests, urllib3) costs about 60 ms, more than a `docker ps -a`
on a small host; `tamer ls` and `tamer df` only read JSON, so on a unix socket they use this
instead. The SDK stays for what it earns its keep on: tcp/TLS/ssh hosts, streams (events),
uploads (image import) and most mutations (a container's removal, a volume's creation and removal
come here: a clean removes thousands, and a restore would import the SDK, 0.2-0.3 s, only to create
its volume). Errors raised here (EngineHTTPError, OSError,
TimeoutError) are turned into TamerError by the one translator, tamer.engine.errors.
"""

from __future__ import annotations

import _socket  # not socket: its module wraps constants in enums (enum, re: ~5 ms of every command)
import _thread
import io

from tamer.fastjson import loads

TYPE_CHECKING = False  # not typing's: importing typing costs ~3 ms, a fifth of a `docker images`
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any, BinaryIO

    Params = dict[str, Any] | list[tuple[str, Any]]

# urllib.parse (with ipaddress) costs ~3 ms to import; these are its quote() and urlencode() for what
# a GET here carries (a unit test checks them against urllib.parse on hostile strings)
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~")
_PATH_SAFE = _UNRESERVED | frozenset("/:@")


def _quote(text: str, safe: frozenset[str], *, plus: bool) -> str:
    """Percent-encode `text`'s UTF-8 bytes but those in `safe`; `plus`: a space becomes "+".

    One str.replace per distinct byte to encode, each a pass in C: a filter naming 375 volumes (19 KB)
    is quoted in 0.2 ms where a Python loop over its bytes took 1-1.5 ms of the `tamer ls volumes` chain."""
    raw = text.encode("utf-8").decode("latin-1")  # one character per byte
    unsafe = set(raw).difference(safe)
    if not unsafe:
        return raw
    if "%" in unsafe:  # first: the escapes below bring in "%" of their own
        raw = raw.replace("%", "%25")
        unsafe.discard("%")
    space = plus and " " in unsafe
    if space:
        unsafe.discard(" ")
    for byte in unsafe:
        raw = raw.replace(byte, f"%{ord(byte):02X}")
    return raw.replace(" ", "+") if space else raw  # last: a "+" of the text is "%2B" by now


def quote_path(path: str) -> str:
    """urllib.parse.quote(path, safe="/:@"): UTF-8, every other byte as %XX."""
    return _quote(path, _PATH_SAFE, plus=False)


def _quote_plus(text: str) -> str:
    return _quote(text, _UNRESERVED, plus=True)


def urlencode_pairs(pairs: Iterable[tuple[str, Any]]) -> str:
    """urllib.parse.urlencode(pairs) for str/int/bool values: key=value pairs joined by &, quote_plus'ed."""
    return "&".join(f"{_quote_plus(str(k))}={_quote_plus(str(v))}" for k, v in pairs)


class EngineHTTPError(Exception):
    """The engine answered with an HTTP error status; `explanation` is its own message."""

    def __init__(self, status: int, explanation: str, path: str) -> None:
        super().__init__(f"{status} for {path}: {explanation}")
        self.status = status
        self.explanation = explanation
        self.path = path


class ProtocolError(ConnectionError):
    """The engine's answer was not the HTTP/1.1 this transport speaks (or the connection broke mid-answer)."""


class _SocketReader(io.RawIOBase):
    """What socket.makefile("rb") gives, on the C socket: io.BufferedReader over recv_into."""

    def __init__(self, sock: _socket.socket) -> None:
        self._sock = sock
        self.received = 0  # bytes that came since the connection last sent a request

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        n = self._sock.recv_into(b)
        self.received += n
        return n


class _UnixConnection:
    """One HTTP/1.1 connection on a unix socket: GET, DELETE, POST with a JSON body; JSON answers, kept alive.

    Written on the bare socket rather than with http.client, whose import (email parsing,
    random, ssl) costs more than a listing of a small host.
    """

    def __init__(self, socket_path: str, timeout: float) -> None:
        self.socket_path = socket_path
        self.timeout = timeout
        self.sock: _socket.socket | None = None
        self._reader: BinaryIO | None = None
        self._raw: _SocketReader | None = None
        self.headers: dict[bytes, bytes] = {}  # of the last answer, names lower-cased

    @property
    def answered(self) -> bool:
        """Whether any byte of the last request's answer came (else the engine never answered it).

        Counted as the bytes arrive, not once a whole status line is read: an engine that sends part of
        its status line and then resets the connection makes one readline both receive bytes and raise
        ConnectionResetError, and that request may well have been carried out."""
        return self._raw is not None and self._raw.received > 0

    def settimeout(self, timeout: float) -> None:
        self.timeout = timeout
        if self.sock is not None:
            self.sock.settimeout(timeout)

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def get(self, url: str, method: str = "GET", body: bytes | None = None) -> tuple[int, bytes, bool]:
        """(status, body, whether the engine will close the connection). `method`: GET, DELETE, or POST
        with `body` (JSON) when one is given."""
        if self.sock is None:
            sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
            try:
                sock.settimeout(self.timeout)
                sock.connect(self.socket_path)
            except BaseException:
                sock.close()
                raise
            self.sock = sock
            self._raw = _SocketReader(sock)
            self._reader = io.BufferedReader(self._raw)
        reader, raw = self._reader, self._raw
        if reader is None or raw is None:  # never: all are set together above
            raise ProtocolError("connection without a reader")
        raw.received = 0
        head = f"{method} {url} HTTP/1.1\r\nHost: docker\r\nAccept: application/json\r\n"
        if body is None:
            self.sock.sendall(f"{head}\r\n".encode())
        else:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            self.sock.sendall(head.encode() + body)
        status_line = reader.readline(65537)
        if not status_line:
            raise _Disconnected("the engine closed the connection before answering")
        parts = status_line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise ProtocolError(f"not an HTTP answer: {status_line[:80]!r}")
        status = int(parts[1])
        headers: dict[bytes, bytes] = {}
        while True:
            line = reader.readline(65537)
            if line in (b"\r\n", b"\n"):
                break
            if not line:
                raise ProtocolError("the connection broke inside the answer's headers")
            key, _, value = line.partition(b":")
            headers[key.strip().lower()] = value.strip()
        self.headers = headers
        closing = headers.get(b"connection", b"").lower() == b"close" or parts[0] == b"HTTP/1.0"
        if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
            body = self._read_chunked(reader)
        elif b"content-length" in headers:
            said = headers[b"content-length"]
            if not said.isdigit():
                raise ProtocolError(f"the answer's Content-Length is not a number of bytes: {said[:40]!r}")
            length = int(said)
            body = _read_exact(reader, length)
            if len(body) != length:
                raise ProtocolError(f"the answer stopped after {len(body)} of {length} bytes")
        elif status in (204, 304) or 100 <= status < 200:
            body = b""
        else:
            body = reader.read()
            closing = True
        return status, body, closing

    def _read_chunked(self, reader: BinaryIO) -> bytes:
        chunks: list[bytes] = []
        while True:
            size_line = reader.readline(65537)
            if not size_line:
                raise ProtocolError("the connection broke inside a chunked answer")
            said = size_line.split(b";", 1)[0].strip() or b"0"
            try:
                size = int(said, 16)
            except ValueError:
                raise ProtocolError(f"a chunk size in the answer is not hexadecimal: {said[:40]!r}") from None
            if size < 0:
                raise ProtocolError(f"a chunk size in the answer is negative: {said[:40]!r}")
            if size == 0:
                while reader.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(chunks)
            chunk = _read_exact(reader, size)
            if len(chunk) != size:
                raise ProtocolError("the connection broke inside a chunk")
            chunks.append(chunk)
            reader.readline(65537)  # the CRLF after each chunk


_READ_STEP = 1 << 20


def _read_exact(reader: BinaryIO, length: int) -> bytes:
    """`length` bytes, or fewer when the connection ends first; read a MiB at a time, so a length the
    peer merely claims (a hostile socket saying 100 TB) is never allocated up front."""
    if length <= _READ_STEP:
        return reader.read(length)
    parts: list[bytes] = []
    left = length
    while left > 0:
        part = reader.read(min(left, _READ_STEP))
        if not part:
            break
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


class _Disconnected(ConnectionResetError):
    """The connection ended cleanly after the request went and before any answer: the engine had read
    the request (a GET is asked again on a fresh connection; nothing else is)."""


class UnixTransport:
    """GET requests returning decoded JSON; safe to share between threads (a small connection pool)."""

    def __init__(self, socket_path: str, *, timeout: float) -> None:
        self.socket_path = socket_path
        self.timeout = timeout
        self.prefix = ""  # "/v1.43" once the API version is known
        self._idle: list[_UnixConnection] = []
        self._lock = _thread.allocate_lock()

    def get(self, path: str, params: Params | None = None, *, timeout: float | None = None) -> Any:
        """GET `path` (e.g. "/containers/json") with query `params`; the decoded JSON body."""
        body = self._exchange("GET", path, params, timeout)
        try:
            return loads(body) if body else None
        except ValueError:
            raise ProtocolError(f"the answer to {path} is not JSON: {body[:80]!r}") from None

    def delete(self, path: str, params: Params | None = None, *, timeout: float | None = None) -> None:
        """DELETE `path` (e.g. "/containers/ID") with query `params`. The engine removes, or answers an
        error status (EngineHTTPError: 404 gone, 409 in use); its answer's body is not needed."""
        self._exchange("DELETE", path, params, timeout)

    def post(
        self, path: str, body: Any, params: Params | None = None, *, timeout: float | None = None
    ) -> Any:
        """POST `body` as JSON to `path` (e.g. "/volumes/create"); the decoded JSON answer (None when empty)."""
        import json  # only a command that creates something pays for it

        answer = self._exchange("POST", path, params, timeout, json.dumps(body).encode())
        try:
            return loads(answer) if answer else None
        except ValueError:
            raise ProtocolError(f"the answer to {path} is not JSON: {answer[:80]!r}") from None

    def _exchange(
        self, method: str, path: str, params: Params | None, timeout: float | None, body: bytes | None = None
    ) -> bytes:
        url = self.prefix + quote_path(path)
        if params:
            pairs = params.items() if isinstance(params, dict) else params
            url += "?" + urlencode_pairs([(k, v) for k, v in pairs if v is not None])
        conn, reused = self._take(timeout)
        try:
            try:
                status, answer, closing = conn.get(url, method, body)
            except (BrokenPipeError, ConnectionResetError) as exc:
                if not reused or conn.answered or (method != "GET" and isinstance(exc, _Disconnected)):
                    raise
                # the engine closed a kept-alive connection while it sat idle, before reading this
                # request: the send failed (EPIPE), or the request lay unread when it closed (ECONNRESET),
                # and no byte of an answer came: once more, afresh. A clean end after the request went
                # (_Disconnected) means the engine had read it and then closed (died, restarted): only a
                # GET is asked again then; a DELETE or a POST is never sent a second time, nor once the
                # engine began to answer it.
                conn.close()
                status, answer, closing = conn.get(url, method, body)
        except BaseException:
            conn.close()
            raise
        if closing:
            conn.close()
        else:
            self._give_back(conn)
        if status >= 400:
            raise EngineHTTPError(status, _message(answer), path)
        return answer

    def api_version(self, *, timeout: float | None = None) -> str:
        """The engine's API version from its /_ping answer's Api-Version header ("" when it sends none).

        /_ping is what the docker CLI asks first. /version would say the same, but engine 20.10 runs
        `runc --version` and `docker-init --version` to answer it: some 15 ms, more than a whole
        `docker images` on a small host.
        """
        conn, _ = self._take(timeout)
        try:
            status, body, closing = conn.get("/_ping")
        except BaseException:
            conn.close()
            raise
        version = conn.headers.get(b"api-version", b"").decode("ascii", "replace").strip()
        if closing:
            conn.close()
        else:
            self._give_back(conn)
        if status >= 400:
            raise EngineHTTPError(status, _message(body), "/_ping")
        return version

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
        conn.settimeout(wanted)
        return conn, True

    def _give_back(self, conn: _UnixConnection) -> None:
        with self._lock:
            if len(self._idle) < 16:
                self._idle.append(conn)
                return
        conn.close()


def _message(body: bytes) -> str:
    try:
        data = loads(body)
    except ValueError:
        return body.decode(errors="replace").strip()
    if isinstance(data, dict) and "message" in data:
        return str(data["message"])
    return body.decode(errors="replace").strip()
