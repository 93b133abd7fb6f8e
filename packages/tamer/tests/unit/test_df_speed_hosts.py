"""Containers whose hostconfig.json files are byte for byte equal share one parse (datastore.Shared.host):
the same settings as each parsed alone, a damaged file still None, and no more than HOSTS_REMEMBERED
distinct files held."""

from __future__ import annotations

import json

from tamer.engine.datastore import Shared, _slim_host

HOST = {
    "RestartPolicy": {"Name": "unless-stopped", "MaximumRetryCount": 0},
    "AutoRemove": False,
    "LogConfig": {"Type": "json-file", "Config": {"max-size": "10m"}},
    "Binds": ["named1:/data"],
}


def test_equal_bytes_one_parse_same_settings() -> None:
    shared = Shared()
    raw = json.dumps(HOST).encode()
    first, second = shared.host(raw), shared.host(bytes(raw))
    assert first == second == _slim_host(HOST)
    assert first is second  # one parse, one object: read-only, as every part Shared hands out
    other = json.dumps({**HOST, "AutoRemove": True}).encode()
    assert shared.host(other) == _slim_host({**HOST, "AutoRemove": True})


def test_damaged_or_missing_is_none_and_never_remembered() -> None:
    shared = Shared()
    assert shared.host(None) is None
    assert shared.host(b'{"RestartPolicy": ') is None
    assert shared.host(b"[1, 2]") is None  # not an object
    assert shared.host(json.dumps(HOST).encode()) == _slim_host(HOST)


def test_at_most_so_many_files_held() -> None:
    shared = Shared()
    many = [json.dumps({**HOST, "Binds": [f"v{i}:/d"]}).encode() for i in range(Shared.HOSTS_REMEMBERED * 3)]
    assert [shared.host(raw) for raw in many] == [_slim_host(json.loads(raw)) for raw in many]
    assert len(shared._hosts) == Shared.HOSTS_REMEMBERED
