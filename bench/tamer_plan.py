"""Benchmark: planning a cleanup, and what the default policy reclaims next to `docker system prune`.

1. Planning over a synthetic inventory of 10,000 containers, 2,000 images and
   10,000 volumes: the time of `make_plan` and its ratio to the time of reading
   the inventory (building it from the engine's JSON).
2. On the demo clutter, on two identical private engines: bytes reclaimed by
   `tamer clean --apply --yes` (default policy) next to `docker system prune -f`
   (no -a, no --volumes), measured with `du` on each data-root, and the objects
   each removed. tamer's default must reclaim at least as much while removing
   nothing that prune keeps and the policy protects.

The live `tamer plan` against `docker system df -v` (issue 11's target, <= 1.0 with the ledger
warm) is timed by bench/tamer_df.py on its crowded engine, and at 1,000 to 10,000 containers by
bench/tamer_scale.py; this bench times the planning itself.

    .venv/bin/python bench/tamer_plan.py [--skip-prune]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

from tamer.inventory import RawSnapshot, build_inventory
from tamer.plan import make_plan
from tamer.policy import DEFAULT_POLICY, load_policy

NOW = 1_800_000_000.0


def _hex(*parts: object) -> str:
    return hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".123456789Z"


def synthetic_raw(n_containers: int = 10_000, n_images: int = 2_000, n_volumes: int = 10_000) -> RawSnapshot:
    images = []
    for i in range(n_images):
        layers = [f"sha256:{_hex('base', i % 20)}", f"sha256:{_hex('layer', i)}"]
        iid = f"sha256:{_hex('img', i)}"
        tags = [] if i % 10 == 0 else [f"repo{i % 50}:v{i}"]
        images.append(
            {
                "list": {"Id": iid, "RepoTags": tags, "Size": 50_000_000 + i, "Created": NOW - i * 3600},
                "inspect": {
                    "Id": iid,
                    "RepoTags": tags,
                    "Created": _iso(NOW - i * 3600),
                    "Config": {"Volumes": {"/data": {}} if i % 7 == 0 else None, "Labels": {}},
                    "RootFS": {"Layers": layers},
                },
                "chain_ids": layers,
            }
        )
    states = ["running", "exited", "exited", "created", "exited", "dead", "paused"]
    containers = []
    for i in range(n_containers):
        state = states[i % len(states)]
        mounts = [{"Type": "volume", "Name": f"vol{i}", "Destination": "/data", "RW": True}] if i % 2 else []
        containers.append(
            {
                "Id": _hex("c", i),
                "Name": f"/c{i}",
                "Created": _iso(NOW - i * 60),
                "Image": images[i % n_images]["inspect"]["Id"],
                "State": {
                    "Status": state,
                    "ExitCode": 0,
                    "StartedAt": _iso(NOW - i * 60),
                    "FinishedAt": _iso(NOW - i * 30) if state != "running" else "0001-01-01T00:00:00Z",
                },
                "HostConfig": {
                    "RestartPolicy": {"Name": "no"},
                    "AutoRemove": False,
                    "LogConfig": {"Type": "json-file", "Config": {}},
                },
                "Config": {"Image": f"repo{i % 50}", "Labels": {"keep": "1"} if i % 97 == 0 else {}},
                "LogPath": f"/var/lib/docker/containers/{_hex('c', i)}/x-json.log",
                "Mounts": mounts,
                "GraphDriver": {"Name": "overlay2", "Data": {}},
            }
        )
    volumes = [
        {
            "Name": f"vol{i}" if i % 3 else _hex("anon", i),
            "Driver": "local",
            "Labels": None,
            "Options": None,
            "Mountpoint": f"/var/lib/docker/volumes/vol{i}/_data",
            "CreatedAt": _iso(NOW - i * 100),
        }
        for i in range(n_volumes)
    ]
    local = {
        "layers": {ch: 1_000_000 for img in images for ch in img["chain_ids"]},
        "containers": {c["Id"]: [4096 * (i % 5), 8192, 1, 0] for i, c in enumerate(containers)},
        "volumes": {
            v["Name"]: {"placement": "default", "data_path": v["Mountpoint"], "size": [1000 * i, 4096, 1, 0]}
            for i, v in enumerate(volumes)
        },
        "logs": {c["Id"]: {"files": [c["LogPath"]], "size": [10_000, 12_288, 1, 0]} for c in containers},
        "data_root": [0, 0, 0, 0],
        "attributed_allocated": 0,
    }
    return RawSnapshot(
        taken_at=NOW,
        host="unix:///synthetic.sock",
        api_version="1.41",
        info={"DockerRootDir": "/var/lib/docker", "Driver": "overlay2", "ServerVersion": "20.10"},
        containers=containers,
        images=images,
        volumes=volumes,
        local=local,
    )


def bench_planning(repeat: int = 5) -> None:
    raw_json = json.dumps(synthetic_raw().to_json())
    read, plan_default, plan_custom = [], [], []
    custom = load_policy(
        '[images]\nunused_older_than = "30d"\nkeep_newest = 2\n[budget]\nmax_size = "5GB"\n'
        '[volumes]\norphaned_anonymous_older_than = "1d"\n',
        "bench",
    )
    for _ in range(repeat):
        t = time.perf_counter()
        inv = build_inventory(RawSnapshot.from_json(json.loads(raw_json)))
        read.append(time.perf_counter() - t)
        t = time.perf_counter()
        p1 = make_plan(inv, DEFAULT_POLICY)
        plan_default.append(time.perf_counter() - t)
        t = time.perf_counter()
        p2 = make_plan(inv, custom)
        plan_custom.append(time.perf_counter() - t)
    r, d, c = (statistics.median(x) for x in (read, plan_default, plan_custom))
    print(
        f"synthetic inventory: {len(inv.containers)} containers, {len(inv.images)} images, "
        f"{len(inv.volumes)} volumes"
    )
    print(f"read (JSON -> inventory)   median {r * 1000:.0f} ms")
    print(
        f"plan, default policy       median {d * 1000:.0f} ms  ({len(p1.actions)} actions)  ratio to read {d / r:.2f}"
    )
    print(
        f"plan, budget+LRU policy    median {c * 1000:.0f} ms  ({len(p2.actions)} actions)  ratio to read {c / r:.2f}"
    )


def _du(path: str) -> int:
    return int(subprocess.run(["du", "-sxB1", path], capture_output=True, text=True).stdout.split()[0])


def _objects(docker: list[str]) -> set[str]:
    conts = subprocess.run(
        [*docker, "ps", "-a", "--format", "container {{.Names}}"], capture_output=True, text=True
    ).stdout.split("\n")
    imgs = subprocess.run(
        [*docker, "images", "-a", "--format", "image {{.Repository}}:{{.Tag}} {{.ID}}"],
        capture_output=True,
        text=True,
    ).stdout.split("\n")
    vols = subprocess.run([*docker, "volume", "ls", "-q"], capture_output=True, text=True).stdout.split()
    return {x for x in conts + imgs if x} | {f"volume {v}" for v in vols}


def _normalise(objs: set[str]) -> list[str]:
    """Names docker made up and ids differ between the two engines: compare kinds of things."""
    from tamer.names import is_generated_name

    out = []
    for o in objs:
        kind, _, rest = o.partition(" ")
        if kind == "container" and is_generated_name(rest):
            out.append("container <auto-named>")
        elif kind == "image" and rest.startswith("<none>"):
            out.append("image <dangling>")
        elif kind == "volume" and len(rest) == 64:
            out.append("volume <anonymous>")
        else:
            out.append(o)
    return sorted(out)


def _footprint(data_root: str, cid: str) -> int:
    """Allocated bytes a container holds in the data-root (its folder and its layer folders)."""
    paths = [os.path.join(data_root, "containers", cid)]
    try:
        with open(os.path.join(data_root, "image", "overlay2", "layerdb", "mounts", cid, "mount-id")) as fh:
            mount = fh.read().strip()
        paths += [
            os.path.join(data_root, "overlay2", mount),
            os.path.join(data_root, "overlay2", mount + "-init"),
        ]
    except OSError:
        pass
    return sum(_du(p) for p in paths if os.path.exists(p))


def bench_prune() -> None:
    from tamer.clutter import BUSYBOX, make_clutter, run
    from tamer.sandbox import PrivateEngine, why_no_private_engine

    reason = why_no_private_engine()
    if reason:
        print(f"prune comparison skipped: {reason}")
        return
    results: dict[str, Any] = {}
    for who in ("prune", "tamer"):
        with PrivateEngine.create() as sb:
            make_clutter(sb.engine, log_mb=20)
            # something the user protected: prune has no idea, the policy keeps it
            kept = run(
                sb.engine,
                BUSYBOX,
                ["sh", "-c", "echo notes > /notes"],
                name="debug-session",
                labels={"keep": "1"},
            )
            docker = ["docker", "-H", sb.host]
            subprocess.run(["sync"])
            protected = _footprint(str(sb.data_root), kept)
            before, objs_before = _du(str(sb.data_root)), _objects(docker)
            if who == "prune":
                out = subprocess.run(
                    [*docker, "system", "prune", "-f"], capture_output=True, text=True
                ).stdout
                said = out.strip().splitlines()[-1] if out.strip() else ""
            else:
                with tempfile.TemporaryDirectory() as state:
                    out = subprocess.run(
                        [sys.executable, "-m", "tamer", "clean", "--apply", "--yes", "--json"],
                        capture_output=True,
                        text=True,
                        env={**os.environ, "DOCKER_HOST": sb.host, "TAMER_STATE_DIR": state},
                    ).stdout
                said = f"tamer says reclaimed {json.loads(out)['data']['reclaimed']} bytes"
            subprocess.run(["sync"])
            after, objs_after = _du(str(sb.data_root)), _objects(docker)
            results[who] = {
                "reclaimed": before - after,
                "removed": _normalise(objs_before - objs_after),
                "said": said,
                "protected": protected,
            }
    p, t = results["prune"], results["tamer"]
    print(f"docker system prune -f : reclaimed {p['reclaimed']:>12,} bytes (du)  [{p['said']}]")
    print(f"tamer clean (default)  : reclaimed {t['reclaimed']:>12,} bytes (du)  [{t['said']}]")
    print(f"ratio tamer/prune = {t['reclaimed'] / max(1, p['reclaimed']):.3f}")
    print(
        f"prune also removed what the policy protects (label keep): {p['protected']:,} bytes; "
        f"ratio tamer/(prune - protected) = {t['reclaimed'] / max(1, p['reclaimed'] - p['protected']):.4f} "
        "(target >= 1.0)"
    )
    from collections import Counter

    pc, tc = Counter(p["removed"]), Counter(t["removed"])
    print(f"removed by prune, kept by tamer: {sorted((pc - tc).elements())}")
    print(f"removed by tamer, kept by prune: {sorted((tc - pc).elements())}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--skip-prune", action="store_true")
    args = parser.parse_args()
    bench_planning()
    if not args.skip_prune:
        bench_prune()
