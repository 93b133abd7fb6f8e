"""Realistic clutter on a sandbox engine, for `make demo`, benchmarks and captured test data.

What a developer's host looks like after a few months: exited containers with
made-up names, anonymous volumes leaked by an image's VOLUMEs, a chatty
container's big log, dangling images left by rebuilds, a compose project.
Only ever pointed at a private sandbox engine.
"""

from __future__ import annotations

from tamer.engine import Engine
from tamer.sandbox import build_busybox_image, mongo_standin

BUSYBOX = "demo/busybox:1"
MONGO = "demo/mongo:7"


def run(
    engine: Engine,
    image: str,
    cmd: list[str],
    *,
    name: str | None = None,
    detach: bool = False,
    volumes: list[str] | None = None,
    labels: dict[str, str] | None = None,
    restart: str | None = None,
    log_max_size: str | None = None,
) -> str:
    """Create and start a container, wait for it unless `detach`; returns its id."""
    api = engine.api
    host_config = api.create_host_config(
        binds=volumes or None,
        restart_policy={"Name": restart} if restart else None,
        log_config={"Type": "json-file", "Config": {"max-size": log_max_size}} if log_max_size else None,
    )
    container = api.create_container(image, cmd, name=name, labels=labels, host_config=host_config)
    cid = str(container["Id"])
    api.start(cid)
    if not detach:
        api.wait(cid, timeout=120)
    return cid


def make_clutter(engine: Engine, *, log_mb: int = 20) -> None:
    """Fill `engine` (a sandbox!) with the usual mess."""
    api = engine.api
    build_busybox_image(engine, BUSYBOX)
    mongo_standin(engine, MONGO)
    # rebuilt twice: the older builds of app:latest are now dangling
    for build in (b"build 1\n", b"build 2\n", b"build 3\n"):
        build_busybox_image(engine, "demo/app:latest", extra_files={"/etc/build": build * 20000})
    build_busybox_image(engine, "demo/old-tool:0.1", extra_files={"/etc/tool": b"t" * 300_000})

    # a compose project: a running web and a database with a named volume
    api.create_volume("shop_db", labels={"com.docker.compose.project": "shop"})
    run(
        engine,
        BUSYBOX,
        ["sh", "-c", "dd if=/dev/zero of=/db/data bs=1k count=3000 2>/dev/null"],
        name="shop-db-1",
        volumes=["shop_db:/db"],
        labels={"com.docker.compose.project": "shop"},
    )
    run(
        engine,
        BUSYBOX,
        ["sleep", "3600"],
        name="shop-web-1",
        detach=True,
        restart="unless-stopped",
        labels={"com.docker.compose.project": "shop"},
    )
    # mongo run three times without -v: six anonymous volumes, four orphaned once their containers go
    for i in range(3):
        cid = run(
            engine,
            MONGO,
            [
                "sh",
                "-c",
                f"dd if=/dev/zero of=/data/db/chunk bs=1k count={1000 * (i + 1)} "
                "2>/dev/null; echo cfg > /data/configdb/cfg",
            ],
        )
        if i < 2:
            api.remove_container(cid)  # without -v: the volumes stay behind, unowned
    # a chatty container whose log nobody rotates
    run(
        engine,
        BUSYBOX,
        ["sh", "-c", f"yes 'GET /health 200 OK' | head -c {log_mb * 1_000_000}"],
        name="chatty",
    )
    # exited one-off containers with made-up names, some with data in their writable layer
    for i in range(4):
        run(
            engine,
            "demo/app:latest",
            ["sh", "-c", f"dd if=/dev/zero of=/scratch bs=1k count={200 * i} 2>/dev/null"],
        )
    # named volumes: one in use by a stopped container, one orphaned and forgotten
    run(
        engine,
        BUSYBOX,
        ["sh", "-c", "dd if=/dev/zero of=/r/report bs=1k count=1500 2>/dev/null"],
        name="reports",
        volumes=["reports:/r"],
    )
    api.create_volume("old-cache")
    run(
        engine,
        BUSYBOX,
        ["sh", "-c", "dd if=/dev/zero of=/c/blob bs=1k count=2500 2>/dev/null"],
        name="cache-filler",
        volumes=["old-cache:/c"],
    )
    api.remove_container("cache-filler")
