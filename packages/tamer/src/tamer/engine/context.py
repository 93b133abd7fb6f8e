"""Which engine a command talks to: the one the docker CLI would, by the docker CLI's own rules.

The docker CLI picks its engine in this order (docker/cli, `resolveContextName`): `-H`, then
DOCKER_HOST, then the context DOCKER_CONTEXT names, then the `currentContext` of its config file
(`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`), then the default socket. A context
is a file, `$DOCKER_CONFIG/contexts/meta/<sha256 of its name>/meta.json`, whose
`Endpoints.docker.Host` is the address. `docker context use rootless` (rootless Docker, Docker
Desktop, colima) leaves only that file and the config's `currentContext` behind: reading
DOCKER_HOST alone would answer about another engine (the rootful one at the default socket) or
say no engine runs, while `docker ps` in the same shell lists the user's containers.

A context that does not exist is an error, as with the docker CLI (never the default socket
instead). A context whose endpoint carries TLS material (`docker context create --docker
host=tcp://...,ca=...,cert=...,key=...`), or a tcp:// address with DOCKER_TLS_VERIFY or
DOCKER_TLS set, needs TLS, which tamer does not speak yet: it refuses rather than send the
engine's answers in clear text to an address the user secured.

Pure but for reading the environment and those two files; imported by the lean CLI path, so it
uses nothing heavier than os and tamer.fastjson.
"""

from __future__ import annotations

import os
from stat import S_ISREG

from tamer.errors import UsageError
from tamer.fastjson import loads

TYPE_CHECKING = False  # not typing's: importing typing costs ~3 ms
if TYPE_CHECKING:
    from collections.abc import Mapping

DEFAULT_HOST = "unix:///var/run/docker.sock"
DEFAULT_CONTEXT = "default"  # the docker CLI's name for "DOCKER_HOST, else the default socket"
_MAX_FILE_BYTES = 1 << 20  # a config.json or meta.json is a few hundred bytes; a bigger one is not theirs


class ContextError(UsageError):
    """The docker context in effect cannot be used: missing, unreadable, without an address, or TLS."""


def config_dir(env: Mapping[str, str]) -> str:
    """The docker CLI's config folder: DOCKER_CONFIG, else ~/.docker (HOME as the CLI reads it)."""
    given = env.get("DOCKER_CONFIG")
    if given:
        return given
    home = env.get("HOME") or os.path.expanduser("~")
    return os.path.join(home, ".docker")


def context_name(env: Mapping[str, str]) -> tuple[str, str]:
    """(name of the docker context in effect when neither -H nor DOCKER_HOST is given, where it was
    named): DOCKER_CONTEXT, else the config file's currentContext, else "default"."""
    named = env.get("DOCKER_CONTEXT")
    if named:
        return named, "DOCKER_CONTEXT"
    path = os.path.join(config_dir(env), "config.json")
    data = _read_json(path, missing_ok=True)
    current = data.get("currentContext") if isinstance(data, dict) else None
    if current is not None and not isinstance(current, str):
        raise ContextError(
            f"the docker config file {path} has a currentContext that is not a name: {current!r}; "
            "expected a context name; fix it with `docker context use NAME` or pass -H ADDRESS"
        )
    if current:
        return current, f"currentContext in {path}"
    return DEFAULT_CONTEXT, ""


def context_host(name: str, env: Mapping[str, str], *, named_by: str = "") -> str:
    """The engine address of the docker context `name` (ContextError when it cannot be used)."""
    from hashlib import sha256

    digest = sha256(name.encode()).hexdigest()
    folder = config_dir(env)
    meta = os.path.join(folder, "contexts", "meta", digest, "meta.json")
    origin = f" (named by {named_by})" if named_by else ""
    data = _read_json(meta, missing_ok=True)
    if data is None:
        raise ContextError(
            f"docker context {name!r}{origin} does not exist: no {meta}; expected a context that "
            "`docker context ls` lists; create it, choose another (`docker context use NAME`), or pass "
            "-H ADDRESS (nothing was done)"
        )
    endpoints = data.get("Endpoints") if isinstance(data, dict) else None
    docker = endpoints.get("docker") if isinstance(endpoints, dict) else None
    host = docker.get("Host") if isinstance(docker, dict) else None
    if not isinstance(host, str) or not host.strip():
        raise ContextError(
            f"docker context {name!r}{origin} names no engine address (Endpoints.docker.Host in {meta}); "
            "expected one like unix:///run/user/1000/docker.sock; fix the context or pass -H ADDRESS"
        )
    tls = os.path.join(folder, "contexts", "tls", digest, "docker")
    if os.path.isdir(tls) and not host.startswith(("unix://", "ssh://")):
        raise ContextError(
            f"docker context {name!r}{origin} reaches {host} over TLS (its keys are in {tls}), which tamer "
            "does not speak yet; run tamer on that host (ssh), or pass -H ssh://USER@HOST (nothing was done)"
        )
    return host


def resolve_host(host: str | None = None, env: Mapping[str, str] | None = None) -> str:
    """The engine address the docker CLI would use: `host` (-H), else DOCKER_HOST, else the docker
    context in effect, else the default socket. Raises ContextError (exit 2, nothing done) for a
    context that does not exist or cannot be used, and for TLS asked of a tcp:// address."""
    env = os.environ if env is None else env
    where = host or env.get("DOCKER_HOST")
    if not where:
        name, named_by = context_name(env)
        where = DEFAULT_HOST if name == DEFAULT_CONTEXT else context_host(name, env, named_by=named_by)
    # what turns TLS on for the docker CLI (a DOCKER_CERT_PATH alone does not)
    asked = next((name for name in ("DOCKER_TLS_VERIFY", "DOCKER_TLS") if env.get(name)), None)
    if asked and where.startswith("tcp://"):
        raise ContextError(
            f"{asked} asks for TLS to {where}, which tamer does not speak yet; the engine's answers would "
            "go in clear text; run tamer on that host (ssh), pass -H ssh://USER@HOST, or unset "
            f"{asked} for an engine that listens without TLS (nothing was done)"
        )
    return where


def _read_json(path: str, *, missing_ok: bool) -> object:
    """The JSON in `path`; None when it does not exist and `missing_ok`. ContextError when it cannot be
    read, is not a regular file (a FIFO would block the open), is too big, or is not JSON."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        if missing_ok:
            return None
        raise
    except OSError as exc:
        raise ContextError(
            f"cannot read {path} ({exc.strerror or exc}), which says which docker engine to use; "
            "fix its permissions or pass -H ADDRESS (nothing was done)"
        ) from None
    try:
        info = os.fstat(fd)
        size = info.st_size
        if not S_ISREG(info.st_mode) or size > _MAX_FILE_BYTES:
            raise ContextError(
                f"{path} is not a docker config or context file (not a regular file of at most "
                f"{_MAX_FILE_BYTES} bytes); expected a small JSON file; fix it or pass -H ADDRESS (nothing was done)"
            )
        raw = os.read(fd, size) if size else b""
    except OSError as exc:
        raise ContextError(
            f"cannot read {path} ({exc.strerror or exc}), which says which docker engine to use; "
            "fix it or pass -H ADDRESS (nothing was done)"
        ) from None
    finally:
        os.close(fd)
    try:
        return loads(raw)
    except ValueError as exc:
        raise ContextError(
            f"{path} is not valid JSON ({exc}); expected the docker CLI's JSON; fix it (or move it aside) "
            "or pass -H ADDRESS (nothing was done)"
        ) from None
