"""Re-create a container with exactly the configuration read from its inspect JSON.

A volume cannot be re-pointed while a container (even a stopped one) refers
to it, and a container's mounts cannot be changed in place, so move and adopt
remove and re-create the users. `recreate_body` turns inspect JSON into a
POST /containers/create body: Config as is, HostConfig as is, the network
endpoint settings, and every volume mount made explicit, so anonymous volumes
the container had are attached again instead of fresh empty ones.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from tamer.engine import Engine
from tamer.errors import ObjectNotFound

JSON = dict[str, Any]


def _bind_target(bind: str) -> str:
    parts = bind.split(":")
    return os.path.normpath(parts[1] if len(parts) >= 2 else parts[0])


@dataclass(frozen=True)
class Recreation:
    """What is needed to make a container again: its name, create body, and extra networks to join after."""

    name: str
    body: JSON
    extra_networks: dict[str, JSON]


def image_ref(engine: Engine, info: JSON) -> str:
    """The image as the user named it when that name still means the same image, else its id."""
    ref = str((info.get("Config") or {}).get("Image") or "")
    try:
        if ref and engine.inspect_image(ref).get("Id") == info.get("Image"):
            return ref
    except ObjectNotFound:
        pass
    return str(info.get("Image"))


def recreate_body(info: JSON, image: str, replace: dict[str, str] | None = None) -> Recreation:
    """Build the create body for a container like `info`, with `replace` {container path: volume name}.

    Pure. Example: recreate_body(inspect, "mongo", {"/data/db": "mongo_container-data-db"})
    gives a body whose /data/db is the named volume and everything else as before.
    """
    replace = {os.path.normpath(k): v for k, v in (replace or {}).items()}
    config = {k: v for k, v in (info.get("Config") or {}).items() if v not in (None, "") or k == "Cmd"}
    config["Image"] = image
    host = dict(info.get("HostConfig") or {})
    mode = str(host.get("NetworkMode") or "")
    if mode == "host" or mode.startswith("container:"):
        # the engine fills these from the host or the other container; giving them back conflicts
        # with the network mode (the docker CLI refuses it; 20.10's daemon lets it pass)
        for key in ("Hostname", "Domainname", "MacAddress", "ExposedPorts"):
            config.pop(key, None)
    binds = [b for b in (host.get("Binds") or []) if _bind_target(b) not in replace]
    mounts = [m for m in (host.get("Mounts") or []) if os.path.normpath(str(m.get("Target"))) not in replace]
    explicit = {_bind_target(b) for b in binds} | {os.path.normpath(str(m.get("Target"))) for m in mounts}
    rw_of: dict[str, bool] = {}
    for m in info.get("Mounts") or []:
        dest = os.path.normpath(str(m.get("Destination")))
        rw_of[dest] = bool(m.get("RW", True))
        if m.get("Type") == "volume" and dest not in explicit and dest not in replace:
            # an anonymous (or image-declared) volume: name it, or the new container gets an empty one
            binds.append(f"{m['Name']}:{dest}" + ("" if m.get("RW", True) else ":ro"))
    for dest, name in sorted(replace.items()):
        binds.append(f"{name}:{dest}" + ("" if rw_of.get(dest, True) else ":ro"))
    host["Binds"] = binds or None
    host["Mounts"] = mounts or None
    body: JSON = {**config, "HostConfig": host}
    networks: dict[str, JSON] = dict((info.get("NetworkSettings") or {}).get("Networks") or {})
    short_id = str(info.get("Id", ""))[:12]

    def endpoint(ep: JSON) -> JSON:
        out = {k: ep[k] for k in ("IPAMConfig", "Links", "DriverOpts") if ep.get(k)}
        aliases = [a for a in (ep.get("Aliases") or []) if a != short_id]
        if aliases:
            out["Aliases"] = aliases
        return out

    primary = str(host.get("NetworkMode") or "default")
    primary = "bridge" if primary == "default" else primary  # "default" is the bridge network on Linux
    if primary in networks:
        body["NetworkingConfig"] = {"EndpointsConfig": {primary: endpoint(networks[primary])}}
    # API < 1.44 accepts one network at create time: join the others afterwards
    extra = {net: endpoint(ep) for net, ep in networks.items() if net != primary}
    name = str(info.get("Name", "")).lstrip("/")
    return Recreation(name=name, body=body, extra_networks=extra)


def create_again(engine: Engine, rec: Recreation) -> str:
    """Create the container described by `rec`; returns its id (it is not started)."""
    cid = engine.create_container_raw(rec.body, name=rec.name)
    for net, ep in rec.extra_networks.items():
        engine.connect_network(cid, net, ep)
    return cid


def recreation_from_json(data: JSON) -> Recreation:
    return Recreation(
        name=str(data["name"]), body=dict(data["body"]), extra_networks=dict(data["extra_networks"])
    )
