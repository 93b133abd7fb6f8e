"""The lean create_volume when the engine answers 201 with an empty body (a protocol edge no real engine
here produces, hence a tiny fake engine over a unix socket for it alone): the volume the engine then has
under that name is inspected and returned; when it has none, a clear error (nothing was created).
Before, create_volume returned None as if it were the volume (a caller reading it met a TypeError).
The real engine's answer is checked too, so the fake's other answers copy a real engine's.
"""

from __future__ import annotations

import json
import socketserver
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from tamer.engine import connect
from tamer.errors import EngineError

VOLUME = {
    "Name": "made",
    "Driver": "local",
    "Mountpoint": "/var/lib/docker/volumes/made/_data",
    "Labels": {"k": "v"},
    "Options": None,
    "Scope": "local",
    "CreatedAt": "2026-12-02T11:00:00Z",
}


class _FakeEngine(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    created: list[dict[str, Any]]  # what POST /volumes/create was sent (set on the class per server)
    makes: bool  # whether the volume exists after the empty 201

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _answer(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path.endswith("/_ping"):
            self._answer(200, b"OK", {"Api-Version": "1.41", "Content-Type": "text/plain"})
        elif self.path.endswith("/volumes/made") and self.makes and self.created:
            self._answer(200, json.dumps(VOLUME).encode(), {"Content-Type": "application/json"})
        elif "/volumes/" in self.path:
            self._answer(404, b'{"message":"get made: no such volume"}', {"Content-Type": "application/json"})
        else:
            self._answer(404, b'{"message":"page not found"}', {"Content-Type": "application/json"})

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path.endswith("/volumes/create"):
            self.created.append(json.loads(body))
            self._answer(201, b"", {"Content-Type": "application/json"})
        else:
            self._answer(404, b'{"message":"page not found"}', {"Content-Type": "application/json"})


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def _fake(tmp_path: Path, makes: bool) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    created: list[dict[str, Any]] = []
    handler = type("Handler", (_FakeEngine,), {"created": created, "makes": makes})
    path = tmp_path / "fake.sock"
    server = _Server(str(path), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"unix://{path}", created
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def fake_that_creates(tmp_path: Path) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    yield from _fake(tmp_path, makes=True)


@pytest.fixture
def fake_that_creates_nothing(tmp_path: Path) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    yield from _fake(tmp_path, makes=False)


def test_an_empty_201_answers_with_the_volume_the_engine_then_has(
    fake_that_creates: tuple[str, list[dict[str, Any]]],
) -> None:
    host, created = fake_that_creates
    got = connect(host).create_volume("made", labels={"k": "v"})
    assert created == [{"Name": "made", "Driver": "local", "Labels": {"k": "v"}}]
    assert got == VOLUME


def test_an_empty_201_and_no_such_volume_is_a_clear_error(
    fake_that_creates_nothing: tuple[str, list[dict[str, Any]]],
) -> None:
    host, created = fake_that_creates_nothing
    with pytest.raises(EngineError) as caught:
        connect(host).create_volume("made")
    assert len(created) == 1
    message = str(caught.value)
    assert "no volume 'made'" in message and "nothing was created" in message and "run the" in message


def test_a_real_engines_answer_is_the_volume_as_its_inspect_says(eng: Any) -> None:
    engine = connect(eng.host)
    got = engine.create_volume("s8-created", labels={"k": "v"})
    assert got == engine.inspect_volume("s8-created")
    assert json.loads(eng.docker("volume", "inspect", "s8-created"))[0]["Labels"] == {"k": "v"}
