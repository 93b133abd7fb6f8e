"""Attacks on the lean transport's POST (issue 11, review s6): against a scripted engine that reads
each request whole (headers and the Content-Length body), as dockerd does."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tamer.engine.errors import translate
from tamer.engine.transport import UnixTransport
from tamer.errors import EngineUnreachable

# (request head, request body) -> raw answer, or None: close the connection without answering
Script = Callable[[bytes, bytes], bytes | None]


def _read_request(conn: socket.socket, pending: bytearray) -> tuple[bytes, bytes] | None:
    while b"\r\n\r\n" not in pending:
        part = conn.recv(65536)
        if not part:
            return None
        pending += part
    head, _, rest = bytes(pending).partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == b"content-length":
            length = int(value)
    body = bytearray(rest)
    while len(body) < length:
        part = conn.recv(65536)
        if not part:
            break
        body += part
    pending[:] = body[length:]
    return head, bytes(body[:length])


class _Engine:
    """A unix-socket server playing `scripts`, one per request, over as many connections as the client
    opens; `close_after` closes a connection after that many answers on it (an idle close)."""

    def __init__(self, path: str, scripts: list[Script], *, close_after: int = 0, wait: float = 3) -> None:
        self.requests: list[tuple[bytes, bytes]] = []
        self.connections = 0
        self._scripts = list(scripts)
        self._close_after = close_after
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(path)
        self._server.listen(4)
        self._server.settimeout(wait)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        with self._server:
            while self._scripts:
                try:
                    conn, _ = self._server.accept()
                except OSError:
                    return
                self.connections += 1
                with conn:
                    pending = bytearray()
                    answered = 0
                    while self._scripts:
                        got = _read_request(conn, pending)
                        if got is None:
                            break
                        self.requests.append(got)
                        answer = self._scripts.pop(0)(*got)
                        if answer is None:
                            break
                        conn.sendall(answer)
                        answered += 1
                        if self._close_after and answered >= self._close_after:
                            break


def _answer(body: object, status: str = "200 OK") -> Script:
    data = b"" if body is None else json.dumps(body).encode()
    return lambda head, sent: f"HTTP/1.1 {status}\r\nContent-Length: {len(data)}\r\n\r\n".encode() + data


def _echo(status: str = "201 Created") -> Script:
    """Answers with the JSON body it was sent (the engine's answer to a create names what it made)."""
    return lambda head, sent: f"HTTP/1.1 {status}\r\nContent-Length: {len(sent)}\r\n\r\n".encode() + sent


@pytest.fixture
def sock(tmp_path: Path) -> Iterator[str]:
    yield str(tmp_path / "engine.sock")


def test_a_large_non_ascii_body_arrives_whole(sock: str) -> None:
    labels = {f"k{i}-é\u2603": f'v{i} \u0000 "q" \\ {"x" * 60}' for i in range(3000)}  # ~300 KB
    engine = _Engine(sock, [_echo(), _echo()])
    lean = UnixTransport(sock, timeout=5)
    body = {"Name": "v", "Driver": "local", "Labels": labels}
    assert lean.post("/volumes/create", body) == body
    assert lean.post("/volumes/create", {"Name": "w"}) == {"Name": "w"}  # the same connection, in step
    engine.thread.join(5)
    assert engine.connections == 1
    head, sent = engine.requests[0]
    assert len(sent) > 1 << 16 and json.loads(sent) == body
    assert f"\r\nContent-Length: {len(sent)}".encode() in head


def test_an_empty_created_answer_is_none_and_the_connection_stays_good(sock: str) -> None:
    engine = _Engine(sock, [_answer(None, "201 Created"), _answer([7])])
    lean = UnixTransport(sock, timeout=5)
    assert lean.post("/volumes/create", {"Name": "v"}) is None
    assert lean.get("/x") == [7]
    engine.thread.join(5)
    assert engine.connections == 1


def test_a_post_on_a_connection_the_engine_closed_while_idle_is_sent_once_more_whole(sock: str) -> None:
    engine = _Engine(sock, [_answer([1]), _echo()], close_after=1)
    lean = UnixTransport(sock, timeout=5)
    assert lean.get("/a") == [1]
    engine.thread.join(0.2)  # let the engine close the idle connection
    body = {"Name": "v", "Labels": {"x": "y" * 100_000}}
    assert lean.post("/volumes/create", body) == body
    engine.thread.join(5)
    assert engine.connections == 2
    assert [json.loads(sent) for _, sent in engine.requests[1:]] == [body]  # one POST reached it, whole


@pytest.mark.parametrize("reused", [False, True])
def test_a_post_the_engine_began_to_answer_is_never_sent_again(sock: str, reused: bool) -> None:
    """Part of a status line, then the connection closes: an error, and the engine saw one POST."""
    cut: Script = lambda head, sent: b"HTTP/1.1 20"  # noqa: E731
    engine = _Engine(sock, [_answer([1]), cut] if reused else [cut], close_after=2)
    lean = UnixTransport(sock, timeout=5)
    if reused:
        assert lean.get("/a") == [1]
    with pytest.raises(ConnectionError):
        lean.post("/volumes/create", {"Name": "v"})
    engine.thread.join(5)
    assert sum(head.startswith(b"POST ") for head, _ in engine.requests) == 1


def test_a_fresh_connection_closed_without_an_answer_is_not_retried(sock: str) -> None:
    engine = _Engine(sock, [lambda head, sent: None, _answer([1])])
    lean = UnixTransport(sock, timeout=5)
    with pytest.raises(ConnectionError):
        lean.post("/volumes/create", {"Name": "v"})
    assert lean.get("/a") == [1]  # the next request gets a fresh connection
    engine.thread.join(5)
    assert sum(head.startswith(b"POST ") for head, _ in engine.requests) == 1


def test_a_post_with_no_answer_times_out_once_and_reads_as_not_answering(sock: str) -> None:
    hold = threading.Event()

    def silent(head: bytes, sent: bytes) -> bytes | None:
        hold.wait(5)
        return None

    engine = _Engine(sock, [silent])
    lean = UnixTransport(sock, timeout=0.3)
    with pytest.raises(TimeoutError) as hung:
        lean.post("/volumes/create", {"Name": "v"})
    hold.set()
    engine.thread.join(5)
    assert len(engine.requests) == 1
    err = translate(hung.value, where="unix://" + sock, what="create volume v")
    assert isinstance(err, EngineUnreachable) and "did not answer in time" in str(err)
    with contextlib.suppress(OSError):
        lean.close()


@pytest.mark.parametrize("partial", [b"HTTP/1.1 20", b"HTTP/1.1 204 No Content\r\n"])
@pytest.mark.parametrize("method", ["DELETE", "POST"])
def test_a_request_reset_inside_the_status_line_is_never_sent_again(
    sock: str, method: str, partial: bytes
) -> None:
    """The engine sends part of its answer (part of the status line, or the whole line), then resets the
    connection (it closed with part of the request unread): the first recv gives those bytes, the next
    ECONNRESET. Answer bytes came, so the request may have been carried out: it raises, and is never
    re-sent (before, only a whole status line counted as an answer, and the DELETE or POST went to the
    engine twice). Retried only when no byte of an answer came (an idle connection the engine had closed)."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(sock)
    server.listen(4)
    requests: list[bytes] = []

    def run() -> None:
        conn, _ = server.accept()  # one kept-alive connection: /a answered, then the request on it
        conn.recv(4096)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n[1]")
        requests.append(conn.recv(10))  # part of the request left unread: close() then resets the peer
        conn.sendall(partial)
        threading.Event().wait(0.2)
        conn.close()
        server.settimeout(1)
        with contextlib.suppress(OSError):  # a second request would come here
            again, _ = server.accept()
            requests.append(again.recv(4096))
            again.sendall(b'HTTP/1.1 404 Not Found\r\nContent-Length: 23\r\n\r\n{"message":"no such x"}')
            again.close()
        server.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    lean = UnixTransport(sock, timeout=5)
    assert lean.get("/a") == [1]
    threading.Event().wait(0.1)
    with pytest.raises(ConnectionError):
        if method == "DELETE":
            lean.delete("/volumes/x")
        else:
            lean.post("/volumes/create", {"Name": "x" * 200})
    thread.join(5)
    assert len(requests) == 1, requests


@pytest.mark.parametrize("method", ["DELETE", "POST"])
def test_a_request_the_engine_read_whole_and_closed_on_is_never_sent_again(sock: str, method: str) -> None:
    """A kept-alive connection; the engine reads the whole request, then closes without a byte of answer
    (it died, or restarted, while carrying it out). Unlike a connection it closed while idle (the send
    then fails: EPIPE; or the request is left unread: ECONNRESET), the engine had this request: a
    DELETE or POST is not sent a second time (to a restarted engine it could remove or create twice)."""
    engine = _Engine(sock, [_answer([1]), lambda head, sent: None, _echo("200 OK")], wait=0.5)
    lean = UnixTransport(sock, timeout=5)
    assert lean.get("/a") == [1]
    with pytest.raises(ConnectionError):
        if method == "DELETE":
            lean.delete("/volumes/x")
        else:
            lean.post("/volumes/create", {"Name": "x"})
    engine.thread.join(5)
    assert sum(not head.startswith(b"GET ") for head, _ in engine.requests) == 1, engine.requests


def test_a_get_the_engine_read_and_closed_on_is_asked_again(sock: str) -> None:
    """A read changes nothing: asked once more on a fresh connection."""
    engine = _Engine(sock, [_answer([1]), lambda head, sent: None, _answer([2])], wait=0.5)
    lean = UnixTransport(sock, timeout=5)
    assert lean.get("/a") == [1]
    assert lean.get("/b") == [2]
    engine.thread.join(5)
    assert engine.connections == 2
