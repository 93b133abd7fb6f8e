"""The lean unix-socket transport against a scripted server: the answers docker's engine gives
(Content-Length, chunked, errors, a kept-alive connection closed while idle, no answer at all)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tamer.engine.errors import translate
from tamer.engine.transport import EngineHTTPError, UnixTransport
from tamer.errors import EngineError, EngineUnreachable, ObjectNotFound

Answer = Callable[[bytes], bytes | None]  # request bytes -> raw answer (None: close without answering)


def _serve(path: str, answers: list[Answer], *, close_after_each: bool = False) -> threading.Thread:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(4)

    def run() -> None:
        todo = list(answers)
        while todo:
            conn, _ = server.accept()
            with conn:
                while todo:
                    request = b""
                    while b"\r\n\r\n" not in request:
                        part = conn.recv(4096)
                        if not part:
                            break
                        request += part
                    if not request:
                        break
                    answer = todo.pop(0)(request)
                    if answer is None:
                        break
                    conn.sendall(answer)
                    if close_after_each:
                        break
        server.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _json_answer(body: object, status: str = "200 OK", chunked: bool = False) -> Answer:
    data = json.dumps(body).encode()

    def answer(_: bytes) -> bytes:
        if chunked:
            parts = [data[i : i + 7] for i in range(0, len(data), 7)]
            payload = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"
            return f"HTTP/1.1 {status}\r\nTransfer-Encoding: chunked\r\n\r\n".encode() + payload
        return f"HTTP/1.1 {status}\r\nContent-Length: {len(data)}\r\n\r\n".encode() + data

    return answer


@pytest.fixture
def sock(tmp_path: Path) -> Iterator[str]:
    yield str(tmp_path / "engine.sock")


def test_content_length_chunked_and_keep_alive(sock: str) -> None:
    big = [{"Id": f"{i:064x}", "Names": [f"/c{i}"]} for i in range(500)]
    seen: list[bytes] = []

    def record(answer: Answer) -> Answer:
        return lambda req: (seen.append(req), answer(req))[1]

    thread = _serve(
        sock, [record(_json_answer({"ApiVersion": "1.43"})), record(_json_answer(big, chunked=True))]
    )
    lean = UnixTransport(sock, timeout=5)
    assert lean.get("/version") == {"ApiVersion": "1.43"}
    lean.prefix = "/v1.43"
    assert lean.get("/containers/json", {"all": 1, "filters": json.dumps({"volume": ["a b"]})}) == big
    thread.join(5)
    assert seen[1].startswith(
        b"GET /v1.43/containers/json?all=1&filters=%7B%22volume%22%3A+%5B%22a+b%22%5D%7D "
    )
    assert len(seen) == 2  # both on one kept-alive connection (the server accepted once)


def test_an_idle_connection_the_engine_closed_is_retried_once(sock: str) -> None:
    thread = _serve(sock, [_json_answer([1]), _json_answer([2])], close_after_each=True)
    lean = UnixTransport(sock, timeout=5)
    assert lean.get("/a") == [1]
    assert lean.get("/b") == [2]  # the pooled connection was closed by the server: a fresh one answers
    thread.join(5)


def test_errors_are_translated_once(sock: str) -> None:
    _serve(
        sock,
        [
            _json_answer({"message": "No such container: x"}, "404 Not Found"),
            _json_answer({"message": "conflict: in use"}, "409 Conflict"),
        ],
    )
    lean = UnixTransport(sock, timeout=5)
    with pytest.raises(EngineHTTPError) as missing:
        lean.get("/containers/x/json")
    with pytest.raises(EngineHTTPError) as refused:
        lean.get("/containers/y/json")
    assert isinstance(translate(missing.value, where="unix://" + sock), ObjectNotFound)
    err = translate(refused.value, where="unix://" + sock, what="remove container y")
    assert isinstance(err, EngineError) and "conflict: in use" in str(err)


def test_no_engine_and_a_hung_engine(sock: str) -> None:
    with pytest.raises(FileNotFoundError) as none:
        UnixTransport(sock, timeout=1).get("/version")
    assert isinstance(translate(none.value, where="unix://" + sock), EngineUnreachable)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(sock)
    server.listen(1)  # accepts (the kernel does) and never answers
    try:
        with pytest.raises(TimeoutError) as hung:
            UnixTransport(sock, timeout=0.3).get("/version")
        err = translate(hung.value, where="unix://" + sock)
        assert isinstance(err, EngineUnreachable) and "did not answer in time" in str(err)
    finally:
        server.close()


@pytest.mark.parametrize(
    ("kind", "name"),
    [
        ("volume", "../../etc"),
        ("volume", "../containers/json"),
        ("volume", "x/../../volumes"),
        ("container", "a//b"),
        ("image", "repo/./x:1"),
        ("volume", ""),
    ],
)
def test_names_that_are_path_tricks_are_not_found_before_any_request(kind: str, name: str) -> None:
    from tamer.engine.client import path_name

    with pytest.raises(ObjectNotFound) as err:
        path_name(kind, name)
    assert repr(name) in str(err.value) and "tamer ls" in str(err.value)


@pytest.mark.parametrize(
    ("kind", "name"),
    [
        ("image", "tamer-test/busybox:1"),
        ("image", "localhost:5000/a/b:2"),
        ("container", "/web"),
        ("volume", "my.vol_1-2"),
        ("image", "sha256:" + "a" * 64),
    ],
)
def test_real_names_pass(kind: str, name: str) -> None:
    from tamer.engine.client import path_name

    assert path_name(kind, name) == name


def test_the_transports_quoting_is_urllibs() -> None:
    """quote_path and urlencode_pairs stand in for urllib.parse (whose import costs ~3 ms of every command):
    they must encode exactly as it does, on names, filters and hostile strings alike."""
    import json as _json
    import random
    from urllib.parse import quote, urlencode

    from tamer.engine.transport import quote_path, urlencode_pairs

    rng = random.Random(11)
    alphabet = [chr(c) for c in range(0, 0x80)] + [
        "é",
        "\u202e",
        "😀",
        "\u2028",
        "ß",
        "/",
        "%",
        "+",
        " ",
        "&",
        "=",
    ]
    samples = [
        "/containers/json",
        "/volumes/my vol",
        "/images/sha256:abc/json",
        "/volumes/a%2Fb",
        "/x/../y?z#w",
        "",
    ]
    samples += ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40))) for _ in range(2000)]
    for text in samples:
        assert quote_path(text) == quote(text, safe="/:@"), text
        pairs = [("filters", _json.dumps({"name": [text]})), (text, 1), ("all", True), ("k", text)]
        assert urlencode_pairs(pairs) == urlencode(pairs), text


def test_the_transports_quoting_is_urllibs_on_long_texts_with_every_byte() -> None:
    """Long texts (a filter naming hundreds of volumes) and texts holding every byte value, '%' and '+'
    beside their escapes: still exactly urllib.parse's encoding."""
    import json as _json
    import random
    from urllib.parse import quote, urlencode

    from tamer.engine.transport import quote_path, urlencode_pairs

    rng = random.Random(5)
    every = "".join(chr(c) for c in range(256)) + "\u4e2d\U0001f600\u202e"
    names = [f"vol-{i}" if i % 3 else "".join(rng.choice(every) for _ in range(30)) for i in range(400)]
    samples = [
        _json.dumps({"volume": names}),
        every,
        every[::-1],
        "%25%2B+ %%++  ",
        "+" * 50 + " " * 50 + "%" * 50,
        "%2F/%3A:@%40",
    ]
    samples += ["".join(rng.sample(every, 40)) for _ in range(200)]
    for text in samples:
        assert quote_path(text) == quote(text, safe="/:@"), text
        pairs = [("all", 1), ("filters", text), (text, text)]
        assert urlencode_pairs(pairs) == urlencode(pairs), text


def _ping_answer(api_version: str | None) -> Answer:
    def answer(request: bytes) -> bytes:
        assert request.startswith(b"GET /_ping "), request
        header = f"Api-Version: {api_version}\r\n" if api_version else ""
        return f"HTTP/1.1 200 OK\r\n{header}Content-Length: 2\r\n\r\nOK".encode()

    return answer


def test_connect_learns_the_api_version_from_ping_and_falls_back_to_version(sock: str) -> None:
    """connect() asks /_ping as the docker CLI does (engine 20.10 runs runc and docker-init to answer
    /version); an engine whose /_ping does not say its version is asked /version."""
    from tamer.engine.client import connect

    seen: list[bytes] = []

    def record(answer: Answer) -> Answer:
        return lambda req: (seen.append(req.split(b"\r\n", 1)[0]), answer(req))[1]

    thread = _serve(sock, [record(_ping_answer("1.43")), record(_json_answer({"Volumes": [{"Name": "v"}]}))])
    engine = connect(f"unix://{sock}", timeout=5)
    assert engine.api_version == "1.43"
    assert engine.volumes() == [{"Name": "v"}]
    thread.join(5)
    assert seen == [b"GET /_ping HTTP/1.1", b"GET /v1.43/volumes HTTP/1.1"]


def test_connect_asks_version_when_ping_is_silent(tmp_path: Path) -> None:
    from tamer.engine.client import connect

    sock = str(tmp_path / "old.sock")
    thread = _serve(sock, [_ping_answer(None), _json_answer({"ApiVersion": "1.41"})])
    assert connect(f"unix://{sock}", timeout=5).api_version == "1.41"
    thread.join(5)


def test_connect_asks_version_when_a_proxy_refuses_ping(tmp_path: Path) -> None:
    """A socket proxy that denies /_ping (403) but allows /version still connects."""
    from tamer.engine.client import connect

    sock = str(tmp_path / "proxy.sock")

    def forbidden(_: bytes) -> bytes:
        body = b'{"message": "forbidden"}'
        return b"HTTP/1.1 403 Forbidden\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)

    thread = _serve(sock, [forbidden, _json_answer({"ApiVersion": "1.44"})])
    assert connect(f"unix://{sock}", timeout=5).api_version == "1.44"
    thread.join(5)


def test_delete_sends_delete_and_reads_no_content_or_an_error(sock: str) -> None:
    seen: list[bytes] = []

    def no_content(req: bytes) -> bytes:
        seen.append(req)
        return b"HTTP/1.1 204 No Content\r\n\r\n"

    def conflict(req: bytes) -> bytes:
        seen.append(req)
        return _json_answer({"message": "cannot remove a running container"}, "409 Conflict")(req)

    thread = _serve(sock, [no_content, conflict, _json_answer([3])])
    lean = UnixTransport(sock, timeout=5)
    lean.prefix = "/v1.41"
    assert lean.delete("/containers/abc", {"v": 0, "force": 0}) is None
    with pytest.raises(EngineHTTPError) as refused:
        lean.delete("/containers/def", {"v": 0, "force": 0})
    assert refused.value.status == 409 and "running container" in refused.value.explanation
    assert lean.get("/c") == [3]  # the connection is still good after both
    thread.join(5)
    assert seen[0].startswith(b"DELETE /v1.41/containers/abc?v=0&force=0 HTTP/1.1\r\n")
    assert seen[1].startswith(b"DELETE /v1.41/containers/def?")


def test_post_sends_its_json_body_and_reads_the_answer_or_an_error(sock: str) -> None:
    """A volume's creation goes here (no docker SDK import for a restore): the body as JSON with its
    Content-Type and exact Content-Length, the answer decoded; an error status is an EngineHTTPError."""
    seen: list[bytes] = []

    def created(req: bytes) -> bytes:
        seen.append(req)
        return _json_answer({"Name": "v", "Driver": "local"}, "201 Created")(req)

    def refused(req: bytes) -> bytes:
        seen.append(req)
        return _json_answer({"message": "volume name is invalid"}, "400 Bad Request")(req)

    thread = _serve(sock, [created, refused, _json_answer([3])])
    lean = UnixTransport(sock, timeout=5)
    lean.prefix = "/v1.41"
    body = {"Name": "v", "Driver": "local", "Labels": {"é": "x y"}}
    assert lean.post("/volumes/create", body) == {"Name": "v", "Driver": "local"}
    with pytest.raises(EngineHTTPError) as bad:
        lean.post("/volumes/create", {"Name": "a/b"})
    assert bad.value.status == 400 and "invalid" in bad.value.explanation
    assert lean.get("/c") == [3]  # the connection is still good after both
    thread.join(5)
    head, _, sent = seen[0].partition(b"\r\n\r\n")
    assert head.startswith(b"POST /v1.41/volumes/create HTTP/1.1\r\n")
    assert b"\r\nContent-Type: application/json" in head
    assert f"\r\nContent-Length: {len(sent)}".encode() in head
    assert json.loads(sent) == body
