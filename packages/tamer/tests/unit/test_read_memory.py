"""How much memory reading a host holds per container (issue 11: `tamer df` under 150 MB at 10,000).

A data-root laid out as engine 20.10 lays it out (each container's config.v2.json and hostconfig.json,
copied from a real engine, and the layer store's mount ids), a container list as the engine answers it
(parsed from its JSON, as the transport does), and an engine that answers only that: read_raw_snapshot
reads it all, walker included, and tracemalloc counts what the read holds at its peak and at its end.
The budgets sit between what the reading holds now and what it held when it kept every record parsed
at once, the whole container list and a copy of every container's host settings (9.8-11.2 KiB per
container at its peak and 4.5 KiB at its end, against 5.5-6.0 and 2.7-2.8 KiB now): they fail if any
of those comes back. The records built must not change: the containers read equal those built one by
one without sharing anything.
"""

from __future__ import annotations

import copy
import gc
import json
import os
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from tamer.collect import LISTED_KEYS, read_raw_snapshot, slim_listing
from tamer.engine.datastore import Shared, container_from_datastore
from tamer.fastjson import loads

JSON = dict[str, Any]
N = 1000
# per container, in bytes (see the module docstring for where they come from)
PEAK_BUDGET = 8000
KEPT_BUDGET = 3500

# a created container's config.v2.json on engine 20.10, as written (ids and paths filled in below)
CONFIG = {
    "StreamConfig": {},
    "State": {
        "Running": False,
        "Paused": False,
        "Restarting": False,
        "OOMKilled": False,
        "RemovalInProgress": False,
        "Dead": False,
        "Pid": 0,
        "ExitCode": 0,
        "Error": "",
        "StartedAt": "0001-01-01T00:00:00Z",
        "FinishedAt": "0001-01-01T00:00:00Z",
        "Health": None,
    },
    "ID": "",
    "Created": "",
    "Managed": False,
    "Path": "sh",
    "Args": ["-c", "echo 78 > /out; head -c 1000 /bin/busybox > /w"],
    "Config": {
        "Hostname": "0348463af81f",
        "Domainname": "",
        "User": "",
        "AttachStdin": False,
        "AttachStdout": True,
        "AttachStderr": True,
        "Tty": False,
        "OpenStdin": False,
        "StdinOnce": False,
        "Env": None,
        "Cmd": ["sh", "-c", "echo 78 > /out; head -c 1000 /bin/busybox > /w"],
        "Image": "bench/img8:1",
        "Volumes": None,
        "WorkingDir": "",
        "Entrypoint": None,
        "NetworkDisabled": True,
        "OnBuild": None,
        "Labels": {},
    },
    "Image": "sha256:1b6361dc500564e9a874c9201b3acd8efa3bcfff562eb75cc9d3c3b588089c0d",
    "NetworkSettings": {
        "Bridge": "",
        "SandboxID": "",
        "HairpinMode": False,
        "LinkLocalIPv6Address": "",
        "LinkLocalIPv6PrefixLen": 0,
        "Networks": {
            "bridge": {
                "IPAMConfig": None,
                "Links": None,
                "Aliases": None,
                "NetworkID": "",
                "EndpointID": "",
                "Gateway": "",
                "IPAddress": "",
                "IPPrefixLen": 0,
                "IPv6Gateway": "",
                "GlobalIPv6Address": "",
                "GlobalIPv6PrefixLen": 0,
                "MacAddress": "",
                "DriverOpts": None,
                "IPAMOperational": False,
            }
        },
        "Service": None,
        "Ports": None,
        "SandboxKey": "",
        "SecondaryIPAddresses": None,
        "SecondaryIPv6Addresses": None,
        "IsAnonymousEndpoint": True,
        "HasSwarmEndpoint": False,
    },
    "LogPath": "",
    "Name": "",
    "Driver": "overlay2",
    "OS": "linux",
    "MountLabel": "",
    "ProcessLabel": "",
    "RestartCount": 0,
    "HasBeenStartedBefore": False,
    "HasBeenManuallyStopped": False,
    "MountPoints": {},
    "SecretReferences": None,
    "ConfigReferences": None,
    "AppArmorProfile": "",
    "HostnamePath": "",
    "HostsPath": "",
    "ShmPath": "",
    "ResolvConfPath": "",
    "SeccompProfile": "",
    "NoNewPrivileges": False,
    "LocalLogCacheMeta": {"HaveNotifyEnabled": False},
}
HOSTCONFIG = {
    "Binds": None,
    "ContainerIDFile": "",
    "LogConfig": {"Type": "json-file", "Config": {}},
    "NetworkMode": "default",
    "PortBindings": None,
    "RestartPolicy": {"Name": "", "MaximumRetryCount": 0},
    "AutoRemove": False,
    "VolumeDriver": "",
    "VolumesFrom": None,
    "CapAdd": None,
    "CapDrop": None,
    "CgroupnsMode": "host",
    "IpcMode": "private",
    "ShmSize": 67108864,
    "Runtime": "runc",
    "ConsoleSize": [0, 0],
    "MaskedPaths": ["/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/sys/firmware"],
    "ReadonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
}


def _listed(cid: str, i: int) -> JSON:
    """An entry of GET /containers/json?all=1, as engine 20.10 writes it."""
    mounts = (
        [
            {
                "Type": "volume",
                "Name": f"v{i}",
                "Source": "",
                "Destination": "/data",
                "Driver": "local",
                "Mode": "",
                "RW": True,
                "Propagation": "",
            }
        ]
        if i % 4 == 0
        else []
    )
    return {
        "Id": cid,
        "Names": [f"/c{i}"],
        "Image": "bench/img8:1",
        "ImageID": "sha256:1b6361dc500564e9a874c9201b3acd8efa3bcfff562eb75cc9d3c3b588089c0d",
        "Command": f"sh -c 'echo {i} > /out'",
        "Created": 1796181240 + i,
        "Ports": [],
        "Labels": {"bench": str(i), **({"com.docker.compose.project": f"p{i % 13}"} if i % 3 == 0 else {})},
        "State": "exited" if i % 5 == 0 else "created",
        "Status": "Created",
        "HostConfig": {"NetworkMode": "default"},
        "NetworkSettings": {
            "Networks": {"bridge": copy.deepcopy(CONFIG["NetworkSettings"]["Networks"]["bridge"])}
        },
        "Mounts": mounts,
    }


class FakeEngine:
    """The reads read_raw_snapshot makes, answered from a data-root on disk and a container list."""

    where = "unix:///nonexistent/fake.sock"
    api_version = "1.41"

    def __init__(self, data_root: Path, listing: bytes) -> None:
        self.data_root = data_root
        self.listing = listing

    def info(self) -> JSON:
        return {"DockerRootDir": str(self.data_root), "Driver": "overlay2", "ID": "FAKE", "Name": "fake"}

    def ahead(self, read: Any) -> Any:
        return read

    def containers(self) -> list[JSON]:
        return list(loads(self.listing))  # parsed from the engine's bytes, as the transport does

    def volumes(self) -> list[JSON]:
        return []

    def images(self) -> list[JSON]:
        return []

    def inspect_many(self, kind: str, ids: list[str]) -> dict[str, JSON | None]:
        assert not ids, f"every container has its records on disk; asked to inspect {ids[:3]}"
        return {}

    def supports(self, version: str) -> bool:
        return True

    def system_df(self, kinds: list[str] | None = None) -> JSON:
        return {"BuildCache": []}


def _host(root: Path, n: int) -> bytes:
    """A data-root with n containers' records and writable layers; returns the container list's bytes."""
    (root / "volumes").mkdir(parents=True)
    listing = []
    for i in range(n):
        cid = f"{i:064x}"
        mount = f"{i + 10**6:064x}"
        folder = root / "containers" / cid
        folder.mkdir(parents=True)
        config = copy.deepcopy(CONFIG)
        config.update(
            ID=cid,
            Name=f"/c{i}",
            Created=f"2026-12-02T03:14:{i % 60:02d}.{i:09d}Z",
            LogPath=str(folder / f"{cid}-json.log"),
            HostnamePath=str(folder / "hostname"),
            HostsPath=str(folder / "hosts"),
            ResolvConfPath=str(folder / "resolv.conf"),
        )
        config["Config"]["Hostname"] = cid[:12]
        config["NetworkSettings"]["SandboxID"] = cid
        if i % 5 == 0:
            config["State"].update(ExitCode=i % 3, StartedAt=f"2026-12-02T03:15:{i % 60:02d}.1Z")
            config["State"]["FinishedAt"] = f"2026-12-02T03:15:{i % 60:02d}.2Z"
        host = copy.deepcopy(HOSTCONFIG)
        if i % 7 == 0:
            host["RestartPolicy"] = {"Name": "unless-stopped", "MaximumRetryCount": 0}
        (folder / "config.v2.json").write_text(json.dumps(config, separators=(",", ":")))
        (folder / "hostconfig.json").write_text(json.dumps(host, separators=(",", ":")))
        layer = root / "image" / "overlay2" / "layerdb" / "mounts" / cid
        layer.mkdir(parents=True)
        (layer / "mount-id").write_text(mount)
        (root / "overlay2" / mount / "diff").mkdir(parents=True)
        (root / "overlay2" / f"{mount}-init" / "diff" / "etc").mkdir(parents=True)
        listing.append(_listed(cid, i))
    return json.dumps(listing).encode()


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> FakeEngine:
    root = tmp_path_factory.mktemp("read-memory") / "docker"
    return FakeEngine(root, _host(root, N))


def test_reading_a_host_holds_little_per_container(
    host: FakeEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TAMER_STATE_DIR", str(tmp_path / "state"))
    read_raw_snapshot(host)  # the ledger remembers the init layers, as on every warm run
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        raw = read_raw_snapshot(host)
        kept, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(raw.containers) == N and raw.local is not None
    assert len(raw.local["containers"]) == N  # every writable layer walked
    per_peak = (peak - before) / N
    per_kept = (kept - before) / N
    assert per_peak < PEAK_BUDGET, f"reading held {per_peak:.0f} bytes per container at its peak"
    assert per_kept < KEPT_BUDGET, f"the read snapshot holds {per_kept:.0f} bytes per container"


def test_shared_parts_change_no_record(host: FakeEngine) -> None:
    listed = slim_listing(host.containers())
    assert all(set(entry) <= set(LISTED_KEYS) for entry in listed)
    full = {e["Id"]: e for e in host.containers()}
    shared = Shared()
    for entry in listed:
        alone = container_from_datastore(str(host.data_root), "overlay2", full[entry["Id"]], layer=False)
        together = container_from_datastore(
            str(host.data_root), "overlay2", entry, layer=False, shared=shared
        )
        assert alone is not None and together is not None
        assert json.dumps(together) == json.dumps(alone)
    # equal host settings are one object, told apart from equal-looking ones of another type or order
    a = container_from_datastore(str(host.data_root), "overlay2", listed[1], layer=False, shared=shared)
    b = container_from_datastore(str(host.data_root), "overlay2", listed[2], layer=False, shared=shared)
    assert a is not None and b is not None and a["HostConfig"] is b["HostConfig"]
    assert shared.part({"AutoRemove": True}) is not shared.part({"AutoRemove": 1})
    assert shared.part({"a": 1, "b": 2}) is not shared.part({"b": 2, "a": 1})
    assert shared.part([1.0]) is not shared.part([1])
    assert os.path.isdir(host.data_root)
