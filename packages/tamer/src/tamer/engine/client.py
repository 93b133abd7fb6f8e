"""A thin, typed wrapper over docker-py's low-level APIClient.

Returns plain inspect JSON (dicts). Every call goes through `translated`, so a
caller only ever sees TamerError subclasses. Works with API 1.41 (Debian's
20.10) and newer engines (1.43+); where they differ it says so.

On a unix socket the reads (lists, inspects, info, df) go through the lean
standard-library transport (tamer.engine.transport) and docker-py is imported
only when something else is asked for (a mutation, events, an upload): a
command that only reads never pays its import. The answers are the same JSON.
"""

from __future__ import annotations

from tamer.engine.errors import translated
from tamer.engine.transport import EngineHTTPError, UnixTransport
from tamer.errors import EngineError, ObjectNotFound

TYPE_CHECKING = False  # not typing's: importing typing costs ~3 ms, a fifth of a `docker images`
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Sequence
    from typing import Any, TypeVar

    from tamer.engine.transport import Params

    T = TypeVar("T")
    import docker

if TYPE_CHECKING:
    JSON = dict[str, Any]
else:
    JSON = dict  # the same alias, free of typing at run time
DEFAULT_HOST = "unix:///var/run/docker.sock"
# Inspecting 1,000 containers one by one is latency-bound; a few concurrent
# requests over the unix socket cut that without loading the engine much.
INSPECT_CONCURRENCY = 8
# A healthy engine answers /version and /_ping at once, even when busy; one that accepts
# the connection and then says nothing is hung, and waiting the long per-request timeout
# (meant for slow operations such as `system df`) would only hide that.
ANSWER_TIMEOUT_S = 15.0
# Bytes of volume names per filtered container list. Each such list costs the engine a pass over every
# container (30 ms at 1,000 on engine 20.10) whatever it matches, so as few as fit: 256 KiB of names
# (thousands of them) stays far below the engine's 1 MiB limit on a request's head.
VOLUME_FILTER_BYTES = 256 << 10


def resolve_host(host: str | None = None) -> str:
    """The engine address to use: explicit argument, else DOCKER_HOST, else the docker context in
    effect (DOCKER_CONTEXT, the docker config's currentContext), else the default socket: the engine
    the docker CLI would use (tamer.engine.context)."""
    from tamer.engine.context import resolve_host as docker_cli_host

    return docker_cli_host(host)


def is_api_version(text: str) -> bool:
    """Whether `text` is an engine API version ("1.43"): it becomes a URL prefix, so nothing else may pass."""
    major, dot, minor = text.partition(".")
    return bool(dot) and text.isascii() and major.isdigit() and minor.isdigit()


def connect(host: str | None = None, *, timeout: float = 120.0, answer_within: float | None = None) -> Engine:
    """Connect to the engine at `host` (or DOCKER_HOST, or the default socket).

    `answer_within` (default ANSWER_TIMEOUT_S) bounds the first exchange (version, ping);
    `timeout` bounds each later request.

    Raises EngineUnreachable (with where it looked and how to start one, or, when it accepts
    connections but does not answer, that it is not responding and what to do) or
    EnginePermissionDenied.

    Example:
        >>> engine = connect("unix:///tmp/sandbox/docker.sock")  # doctest: +SKIP
        >>> engine.api_version  # doctest: +SKIP
        '1.41'
    """
    where = resolve_host(host)
    first = ANSWER_TIMEOUT_S if answer_within is None else answer_within
    if where.startswith("unix://"):
        lean = UnixTransport(where.removeprefix("unix://"), timeout=timeout)
        with translated(where, "connect"):
            try:
                api_version = lean.api_version(timeout=first)
            except EngineHTTPError:  # a socket proxy may refuse /_ping and allow /version
                api_version = ""
            if not is_api_version(api_version):  # /_ping did not say it (or said garbage): ask /version
                version = lean.get("/version", timeout=first)
                said = version.get("ApiVersion") if isinstance(version, dict) else None
                if not isinstance(said, str) or not is_api_version(said):
                    raise ConnectionError(
                        f"{where} answered /version with API version {said!r}, expected one like '1.43' "
                        "(digits.digits): not a Docker engine? Check DOCKER_HOST or -H"
                    )
                api_version = said
        lean.prefix = f"/v{api_version}"
        return Engine(None, where, lean=lean, api_version=api_version, timeout=timeout)
    if where.startswith("ssh://"):
        from tamer.engine.ssh import docker_py_client, parse_address

        parse_address(where)  # a malformed address is bad input (exit 2), before anything runs
        with translated(where, "connect"):
            api = docker_py_client(where, timeout=first, max_pool_size=INSPECT_CONCURRENCY + 2)
            api.ping()
        api.timeout = timeout
        return Engine(api, where)
    import docker

    with translated(where, "connect"):
        api = docker.APIClient(
            base_url=where, version="auto", timeout=first, max_pool_size=INSPECT_CONCURRENCY + 2
        )
        api.ping()
    api.timeout = timeout  # read by docker-py on every request
    return Engine(api, where)


def _api_at_least(version: str, wanted: str) -> bool:
    def parts(v: str) -> tuple[int, ...]:
        return tuple(int(p) for p in v.split(".") if p.isdigit())

    return parts(version) >= parts(wanted)


def path_name(kind: str, name: str) -> str:
    """`name` as it may go into a URL path, or ObjectNotFound.

    Names go into URL paths (`/volumes/NAME`); a "." or ".." part (or an empty one) would be
    resolved away before the engine saw it (HTTP clients and the engine's router both clean
    paths), so `../containers/json` would ask another endpoint. No container, volume or image
    can be named so, so such a name is "not found", said plainly. Image references keep their
    slashes (`repo/name:tag`); a container's one leading slash (`/web`) is the engine's own form.
    """
    parts = (name.removeprefix("/") if kind == "container" else name).split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise ObjectNotFound(
            f"no {kind} is named {name!r}: a name with an empty, '.' or '..' path part cannot "
            f"name a {kind}; expected a {kind} name or id; run `tamer ls` to see what exists"
        )
    return name


class Engine:
    """One connected Docker engine. Create it with `connect()`."""

    def __init__(
        self,
        api: docker.APIClient | None,
        where: str,
        *,
        lean: UnixTransport | None = None,
        api_version: str | None = None,
        timeout: float = 120.0,
    ) -> None:
        if api is None and (lean is None or api_version is None):
            raise ValueError("Engine needs a docker-py client, or the lean transport and its API version")
        self._docker_py = api
        self._lean = lean
        self._timeout = timeout
        self.where = where
        self.api_version: str = str(api.api_version) if api is not None else str(api_version)

    @property
    def _api(self) -> docker.APIClient:
        """docker-py's client, made on first use (importing it costs more than most reads)."""
        if self._docker_py is None:
            import docker

            with translated(self.where, "connect"):
                self._docker_py = docker.APIClient(
                    base_url=self.where,
                    version=self.api_version,
                    timeout=self._timeout,
                    max_pool_size=INSPECT_CONCURRENCY + 2,
                )
        return self._docker_py

    def _read(self, what: str, path: str, params: Params | None, fallback: Callable[[], Any]) -> Any:
        """GET `path` over the lean transport when there is one, else docker-py's `fallback`."""
        if self._lean is not None:
            lean = self._lean
            return self._call(what, lambda: lean.get(path, params))
        return self._call(what, fallback)

    # -- helpers -------------------------------------------------------------
    def _call(self, what: str, fn: Callable[[], T]) -> T:
        with translated(self.where, what):
            return fn()

    def ahead(self, read: Callable[[], T]) -> Callable[[], T]:
        """`read` started now, on a thread, when this engine answers reads side by side at no cost (the
        unix socket: another connection is one connect()); the returned function gives its answer.
        Through ssh or TLS another connection is another login or handshake (`-H ssh://` is one login
        for a whole df), so there `read` runs only when its answer is asked for."""
        if self._lean is None:
            return read
        from tamer.background import in_background

        return in_background(read)

    def supports(self, api_version: str) -> bool:
        """True when the engine speaks at least `api_version` (e.g. "1.42")."""
        return _api_at_least(self.api_version, api_version)

    def inspect_many(self, kind: str, ids: Sequence[str]) -> dict[str, JSON | None]:
        """Inspect many objects concurrently; an object that vanished meanwhile maps to None."""
        inspect: Callable[[str], JSON] = {
            "container": self.inspect_container,
            "image": self.inspect_image,
            "volume": self.inspect_volume,
        }[kind]

        def one(obj_id: str) -> JSON | None:
            try:
                return inspect(obj_id)
            except ObjectNotFound:
                return None

        if not ids:
            return {}
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(INSPECT_CONCURRENCY, len(ids))) as pool:
            return dict(zip(ids, pool.map(one, ids), strict=True))

    # -- reading -------------------------------------------------------------
    def info(self) -> JSON:
        return dict(self._read("read engine info", "/info", None, lambda: self._api.info()))

    def version(self) -> JSON:
        return dict(self._read("read engine version", "/version", None, lambda: self._api.version()))

    def containers(self) -> list[JSON]:
        """All containers, running or not (the list form, without sizes)."""
        return list(
            self._read(
                "list containers", "/containers/json", {"all": 1}, lambda: self._api.containers(all=True)
            )
        )

    def inspect_container(self, container: str) -> JSON:
        path_name("container", container)
        return dict(
            self._read(
                f"inspect container {container}",
                f"/containers/{container}/json",
                None,
                lambda: self._api.inspect_container(container),
            )
        )

    def images(self) -> list[JSON]:
        """All images, intermediate ones included."""
        return list(
            self._read("list images", "/images/json", {"all": 0}, lambda: self._api.images(all=False))
        )

    def inspect_image(self, image: str) -> JSON:
        path_name("image", image)
        return dict(
            self._read(
                f"inspect image {image}",
                f"/images/{image}/json",
                None,
                lambda: self._api.inspect_image(image),
            )
        )

    def volumes(self, *, dangling: bool = False) -> list[JSON]:
        """Every volume; `dangling`: only those no container (in any state) refers to, by the engine's
        own reference count, which answers "orphaned?" without reading the container list."""
        if dangling:
            listed = self._read(
                "list volumes no container uses",
                "/volumes",
                {"filters": '{"dangling":["true"]}'},
                lambda: self._api.volumes(filters={"dangling": True}),
            )
        else:
            listed = self._read("list volumes", "/volumes", None, lambda: self._api.volumes())
        return list((listed or {}).get("Volumes") or [])

    def unreferenced_volumes(self) -> list[str]:
        """Names of the volumes no container (in any state) refers to: "orphaned" without the whole
        container list.

        The engine's dangling list alone is not that: a container created with --volumes-from takes
        no reference on the volumes it borrows until it starts (measured on engine 20.10), so once the
        lender is removed the engine calls a volume dangling that a container still mounts. So the
        containers that mount any volume on that list are asked for too (the engine's own volume
        filter: one filtered list, only when the dangling list is not empty), and every volume their
        mounts name is taken off it. A container created in between can still make a name stale:
        this is a listing, never a permission (removal re-checks at the point of action)."""
        dangling = [str(v.get("Name")) for v in self.volumes(dangling=True)]
        used: set[str] = set()
        batches: list[list[str]] = []
        size = VOLUME_FILTER_BYTES
        for name in dangling:
            if size + len(name) + 4 > VOLUME_FILTER_BYTES:
                batches.append([])
                size = 0
            batches[-1].append(name)
            size += len(name) + 4  # quoted, comma: its share of the JSON before URL quoting
        for batch in batches:
            filters = {"volume": batch}

            def fallback(filters: dict[str, list[str]] = filters) -> Any:
                return self._api.containers(all=True, filters=filters)

            users = self._read(
                "list containers that mount orphaned-looking volumes",
                "/containers/json",
                {"all": 1, "filters": _dumps(filters)},
                fallback,
            )
            for c in users or []:
                used.update(str(m.get("Name")) for m in c.get("Mounts") or [] if m.get("Type") == "volume")
        return [name for name in dangling if name not in used]

    def inspect_volume(self, volume: str) -> JSON:
        path_name("volume", volume)
        return dict(
            self._read(
                f"inspect volume {volume}",
                f"/volumes/{volume}",
                None,
                lambda: self._api.inspect_volume(volume),
            )
        )

    def system_df(self, kinds: Iterable[str] | None = None) -> JSON:
        """The engine's own disk usage figures (`docker system df -v`).

        `kinds` (API 1.42+) limits what the engine computes: "image",
        "container", "volume", "build-cache". Older engines ignore it and
        compute everything, which walks every volume: slow on big hosts.
        """
        if kinds is not None and self.supports("1.42"):
            params = [("type", k) for k in kinds]
            return dict(
                self._read(
                    "read disk usage",
                    "/system/df",
                    params,
                    lambda: self._api._result(
                        self._api._get(self._api._url("/system/df"), params=params), True
                    ),
                )
            )
        return dict(self._read("read disk usage", "/system/df", None, lambda: self._api.df()))

    def events(
        self, *, since: float | None = None, until: float | None = None, filters: JSON | None = None
    ) -> Iterator[JSON]:
        """Engine events as dicts; blocks for new ones unless `until` is given."""
        stream = self._call(
            "follow events", lambda: self._api.events(since=since, until=until, filters=filters, decode=True)
        )
        with translated(self.where, "follow events"):
            yield from stream

    # -- building test and sandbox images ------------------------------------
    def import_image(self, tar_bytes: bytes, repository: str, tag: str, changes: Sequence[str] = ()) -> str:
        """Create an image from a root filesystem tarball (`docker import`); returns its id."""

        def run() -> str:
            out = self._api.import_image_from_data(
                tar_bytes, repository=repository, tag=tag, changes=list(changes) or None
            )
            return str(self._api.inspect_image(f"{repository}:{tag}")["Id"]) if out is not None else ""

        return self._call(f"import image {repository}:{tag}", run)

    # -- removals (used by apply.py only) ------------------------------------
    def remove_image(self, ref: str) -> None:
        """Remove an image reference (a tag, or an id when untagged); never forced."""
        path_name("image", ref)
        self._call(f"remove image {ref}", lambda: self._api.remove_image(ref, force=False, noprune=False))

    def remove_build_cache(self, cache_id: str) -> int:
        """Remove one build cache record; returns the bytes the engine says it reclaimed."""

        def run() -> int:
            params = {"filters": _dumps({"id": [cache_id]})}
            out = self._api._result(self._api._post(self._api._url("/build/prune"), params=params), True)
            return int((out or {}).get("SpaceReclaimed") or 0)

        return self._call(f"remove build cache {cache_id}", run)

    def containers_using(self, *, volume: str | None = None, image: str | None = None) -> list[JSON]:
        """Containers (any state) that use a volume or descend from an image, asked of the engine now."""
        filters: dict[str, str] = {}
        if volume:
            filters["volume"] = volume
        if image:
            filters["ancestor"] = image
        return list(
            self._read(
                "list containers",
                "/containers/json",
                {"all": 1, "filters": _dumps({k: [v] for k, v in filters.items()})},
                lambda: self._api.containers(all=True, filters=filters),
            )
        )

    @property
    def api(self) -> docker.APIClient:
        """The underlying docker-py client, for the mutating modules of tamer.engine only."""
        return self._api

    # -- containers and volumes (mutating) -------------------------------------
    # Used by tamer.volumes (place, move, adopt, run). Each returns plain JSON
    # and raises TamerError subclasses only.
    def create_volume(
        self,
        name: str,
        *,
        driver: str = "local",
        driver_opts: dict[str, str] | None = None,
        labels: dict[str, str] | None = None,
    ) -> JSON:
        what = f"create volume {name}"
        if self._lean is not None:  # as docker-py sends it: empty options and labels left out
            body: JSON = {"Name": name, "Driver": driver}
            if driver_opts:
                body["DriverOpts"] = driver_opts
            if labels:
                body["Labels"] = labels
            lean = self._lean
            created: Any = self._call(what, lambda: lean.post("/volumes/create", body))
            if isinstance(created, dict) and created:
                return created
            # 201 with an empty answer (or one that is no volume): the engine said it created it, so what
            # it has under that name is asked, never assumed; none: it created nothing, said plainly
            try:
                return self.inspect_volume(name)
            except ObjectNotFound:
                raise EngineError(
                    f"{self.where}: the engine answered {what} as done but with {created!r} for the volume, "
                    f"and has no volume {name!r}: nothing was created; expected the created volume's JSON "
                    "(a Docker engine or a proxy that changes its answers?); check the engine, then run the "
                    "command again"
                ) from None
        return self._call(
            what,
            lambda: self._api.create_volume(
                name=name, driver=driver, driver_opts=driver_opts or None, labels=labels or None
            ),
        )

    def remove_volume(self, name: str, *, force: bool = False) -> None:
        path_name("volume", name)
        what = f"remove volume {name}"
        if self._lean is not None:
            lean = self._lean
            self._call(what, lambda: lean.delete(f"/volumes/{name}", {"force": 1} if force else None))
            return
        # not api.remove_volume: docker-py (7.x) hands its force to _url, which drops it, so the engine
        # never saw it over tcp or ssh; the same request as the lean transport's instead
        api = self._api
        self._call(
            what,
            lambda: api._raise_for_status(
                api._delete(api._url("/volumes/{0}", name), params={"force": 1} if force else None)
            ),
        )

    def containers_using_volume(self, name: str) -> list[JSON]:
        """Containers (any state) that mount volume `name`, as list entries."""
        return list(
            self._read(
                f"list containers using volume {name}",
                "/containers/json",
                {"all": 1, "filters": _dumps({"volume": [name]})},
                lambda: self._api.containers(all=True, filters={"volume": name}),
            )
        )

    def create_container_raw(self, body: JSON, *, name: str | None = None) -> str:
        """POST /containers/create with a full body (Config fields + HostConfig + NetworkingConfig).

        Used to re-create a container with exactly the configuration read from
        its inspect JSON. Returns the new container's id.
        """

        def run() -> str:
            out = self._api.create_container_from_config(body, name=name)
            return str(out["Id"])

        return self._call(f"create container {name or ''}".strip(), run)

    def start_container(self, container: str) -> None:
        path_name("container", container)
        self._call(f"start container {container}", lambda: self._api.start(container))

    def stop_container(self, container: str, *, timeout: int = 10) -> None:
        path_name("container", container)
        self._call(f"stop container {container}", lambda: self._api.stop(container, timeout=timeout))

    def remove_container(self, container: str, *, force: bool = False) -> None:
        """Remove a container; its volumes (anonymous ones too) are always kept."""
        path_name("container", container)
        what = f"remove container {container}"
        if self._lean is not None:  # a clean removes thousands: requests' own cost per call is ~1 ms of CPU
            lean = self._lean
            self._call(what, lambda: lean.delete(f"/containers/{container}", {"v": 0, "force": int(force)}))
            return
        self._call(what, lambda: self._api.remove_container(container, v=False, force=force))

    def rename_container(self, container: str, new_name: str) -> None:
        path_name("container", container)
        self._call(f"rename container {container}", lambda: self._api.rename(container, new_name))

    def pause_container(self, container: str) -> None:
        path_name("container", container)
        self._call(f"pause container {container}", lambda: self._api.pause(container))

    def unpause_container(self, container: str) -> None:
        path_name("container", container)
        self._call(f"unpause container {container}", lambda: self._api.unpause(container))

    def connect_network(self, container: str, network: str, endpoint: JSON) -> None:
        path_name("container", container)
        self._call(
            f"connect container {container} to network {network}",
            lambda: self._api._raise_for_status(
                self._api._post_json(
                    self._api._url("/networks/{0}/connect", network),
                    data={"Container": container, "EndpointConfig": endpoint},
                )
            ),
        )


def _dumps(filters: dict[str, list[str]]) -> str:
    """json.dumps(filters) for the engine's `filters` parameter, without importing json (which
    imports `re`, ~5 ms a plain `tamer ls volumes` would pay): the same text, through the C string
    encoder json.dumps itself uses (a unit test compares the two on hostile strings)."""
    try:
        from _json import encode_basestring_ascii as quoted
    except ImportError:  # no C accelerator: json itself
        import json

        return json.dumps(filters)
    return (
        "{"
        + ", ".join(f"{quoted(k)}: [{', '.join(quoted(v) for v in values)}]" for k, values in filters.items())
        + "}"
    )
