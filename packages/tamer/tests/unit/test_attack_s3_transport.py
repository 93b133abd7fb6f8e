"""Hostile engines against connect()'s /_ping path: an API version that is not one never reaches a URL."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from tamer.engine.client import connect
from tamer.errors import TamerError

Answer = Callable[[bytes], bytes]  # request bytes -> raw answer


def _serve(path: str, answers: list[Answer]) -> threading.Thread:
    """A scripted engine: each request on any connection gets the next answer."""
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
                    conn.sendall(todo.pop(0)(request))
        server.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _json_answer(body: object) -> Answer:
    data = json.dumps(body).encode()
    return lambda _: b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(data), data)


def _ping_saying(raw: bytes) -> Answer:
    def answer(request: bytes) -> bytes:
        assert request.startswith(b"GET /_ping "), request
        return b"HTTP/1.1 200 OK\r\nApi-Version: " + raw + b"\r\nContent-Length: 2\r\n\r\nOK"

    return answer


@pytest.mark.parametrize(
    "garbage",
    [
        b"1.43/../../containers/x/kill",
        b"1.43 HTTP/1.0",
        b"1.43?all=1",
        b"\xff\xfe",
        b"latest",
        b"1.",
        b"1.43.x",
    ],
)
def test_a_garbage_ping_version_is_not_used_and_version_is_asked(tmp_path: Path, garbage: bytes) -> None:
    sock = str(tmp_path / "e.sock")
    seen: list[bytes] = []

    def record(answer: Answer) -> Answer:
        return lambda req: (seen.append(req.split(b"\r\n", 1)[0]), answer(req))[1]

    thread = _serve(
        sock,
        [
            record(_ping_saying(garbage)),
            record(_json_answer({"ApiVersion": "1.41"})),
            record(_json_answer([{"Name": "v"}])),
        ],
    )
    engine = connect(f"unix://{sock}", timeout=5)
    assert engine.api_version == "1.41"
    assert engine.images() == [{"Name": "v"}]
    thread.join(5)
    assert seen[-1].startswith(b"GET /v1.41/images/json"), seen


@pytest.mark.parametrize("version", ["1.41/../../x", "", "v1.41", 1.41, None, "1.41\r\nX: y"])
def test_a_version_answer_without_a_real_api_version_is_a_clear_error(
    tmp_path: Path, version: object
) -> None:
    sock = str(tmp_path / "e.sock")
    thread = _serve(sock, [_ping_saying(b"junk"), _json_answer({"ApiVersion": version})])
    with pytest.raises(TamerError) as failed:
        connect(f"unix://{sock}", timeout=5)
    thread.join(5)
    text = str(failed.value)
    assert "API version" in text and "expected" in text, text


def test_a_version_answer_that_is_not_an_object_is_a_clear_error(tmp_path: Path) -> None:
    sock = str(tmp_path / "e.sock")
    thread = _serve(sock, [_ping_saying(b"junk"), _json_answer(["1.41"])])
    with pytest.raises(TamerError) as failed:
        connect(f"unix://{sock}", timeout=5)
    thread.join(5)
    assert "API version" in str(failed.value), str(failed.value)


@pytest.mark.parametrize(
    ("raw", "said"),
    [
        (b"HTTP/1.1 200 OK\r\nApi-Version: 1.41\r\nContent-Length: abc\r\n\r\nOK", "Content-Length"),
        (b"HTTP/1.1 200 OK\r\nApi-Version: 1.41\r\nContent-Length: -5\r\n\r\nOK", "Content-Length"),
        (
            b"HTTP/1.1 200 OK\r\nApi-Version: 1.41\r\nContent-Length: 99999999999999\r\n\r\nOK",
            "stopped after",
        ),
        (b"HTTP/1.1 200 OK\r\nApi-Version: 1.41\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "chunk size"),
    ],
)
def test_a_garbled_answer_is_a_protocol_error_not_a_python_one(tmp_path: Path, raw: bytes, said: str) -> None:
    """A hostile or broken socket gets a sentence about its answer (never "invalid literal for int()" or a
    MemoryError from believing a 100 TB Content-Length)."""
    sock = str(tmp_path / "e.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(sock)
    server.listen(1)

    def answer_once() -> None:
        conn, _ = server.accept()
        with conn:
            conn.recv(4096)
            conn.sendall(raw)
        server.close()

    thread = threading.Thread(target=answer_once, daemon=True)
    thread.start()
    with pytest.raises(TamerError) as failed:
        connect(f"unix://{sock}", timeout=5, answer_within=5)
    thread.join(5)
    text = str(failed.value)
    assert said in text and "invalid literal" not in text and "MemoryError" not in text, text


def test_an_answer_that_is_not_json_says_so(tmp_path: Path) -> None:
    sock = str(tmp_path / "e.sock")
    thread = _serve(
        sock,
        [
            _ping_saying(b"1.41"),
            lambda _: b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n<html>hi!",
        ],
    )
    engine = connect(f"unix://{sock}", timeout=5)
    with pytest.raises(TamerError) as failed:
        engine.images()
    thread.join(5)
    assert "not JSON" in str(failed.value), str(failed.value)
