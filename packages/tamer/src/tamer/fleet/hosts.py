"""The hosts file of `tamer fleet`: TOML -> a tuple of Host values. Pure (reads only the file it is given).

Example::

    version = 1                          # optional

    [defaults]                           # optional: every host gets these unless it sets its own
    tamer = "tamer"                      # the remote command (a string split like a shell does, or a list)
    ssh_options = ["-i", "~/.ssh/fleet"] # extra arguments for ssh, before the host
    connect_timeout = 10                 # seconds ssh waits for the connection

    [[hosts]]
    url = "ssh://admin@web1.example.com"
    labels = { role = "web", dc = "fra" }

    [[hosts]]
    url = "ssh://root@db1.example.com:2222"
    name = "db1"                         # how the tables name it (default: user@host:port as written)
    policy = "/etc/tamer/policy.toml"    # a path on that host, for `fleet plan` and `fleet clean`

A host may also be given as a bare URL string: `hosts = ["ssh://a", "ssh://b"]`.

Everything wrong with the file (a TOML error, an unknown key, a URL that is not `ssh://[user@]host[:port]`,
the same host twice) is one UsageError naming the entry and the key, raised before any host is contacted.
"""

from __future__ import annotations

import hashlib
import re
import shlex
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

from tamer.errors import UsageError

DEFAULT_TAMER = ("tamer",)
DEFAULT_CONNECT_TIMEOUT = 10
MAX_CONNECT_TIMEOUT = 3600
MAX_HOSTS_FILE_CHARS = 16 * 1024 * 1024  # 100,000 hosts take a few MiB
HOST_KEYS = ("url", "name", "labels", "policy", "tamer", "ssh_options", "connect_timeout", "plan_file")
DEFAULT_KEYS = tuple(k for k in HOST_KEYS if k not in ("url", "name", "plan_file"))
TOP_KEYS = ("version", "defaults", "hosts")

# what ssh accepts as a user and a host name, minus anything that could read as an option or a second word
_USER = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._$-]*$")
_HOSTNAME = re.compile(r"^[A-Za-z0-9_](?:[A-Za-z0-9._-]*[A-Za-z0-9_])?$")
_IPV6 = re.compile(r"^\[([0-9A-Fa-f:.]+(?:%[A-Za-z0-9_.-]+)?)\]$")
_LABEL = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class Host:
    """One host of the fleet and how to reach it.

    name: how tables and the JSON name it (unique in the file). url: as written. user/address/port: what
    ssh gets (-l, the destination, -p); None leaves it to ssh (its config, the local user, port 22).
    tamer: the remote command words. plan_file: where on that host `fleet clean` keeps the sealed plan it
    showed (relative paths are in the login's home folder).
    """

    name: str
    url: str
    address: str
    user: str | None = None
    port: int | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    policy: str | None = None
    tamer: tuple[str, ...] = DEFAULT_TAMER
    ssh_options: tuple[str, ...] = ()
    connect_timeout: int = DEFAULT_CONNECT_TIMEOUT
    plan_file: str = ""

    @property
    def identity(self) -> tuple[str, str, int]:
        """Who logs in where: two entries with the same identity are the same host."""
        return (self.user or "", self.address.lower(), self.port or 22)


def parse_url(url: str, where: str) -> tuple[str | None, str, int | None]:
    """`ssh://[user@]host[:port]` -> (user, host, port); UsageError naming `where` otherwise.

    >>> parse_url("ssh://admin@web1:2222", "hosts[1]")
    ('admin', 'web1', 2222)
    """
    expected = "expected ssh://[user@]host[:port], e.g. ssh://admin@web1.example.com:22"
    shown = url if len(url) <= 80 else url[:77] + "..."
    if any(ch.isspace() or ord(ch) < 32 for ch in url):
        raise UsageError(f"{where}: url {shown!r} contains whitespace or control characters; {expected}")
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # "ssh://[::1": urlsplit's refusal is bad input too, not an internal error
        raise UsageError(f"{where}: url {shown!r} cannot be read ({exc}); {expected}") from None
    if parts.scheme.lower() != "ssh":
        raise UsageError(f"{where}: url {shown!r} is not an ssh:// address; {expected}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise UsageError(f"{where}: url {shown!r} has a path, query or fragment; {expected}")
    netloc = parts.netloc
    user: str | None = None
    if "@" in netloc:
        userinfo, _, netloc = netloc.rpartition("@")
        if ":" in userinfo:
            raise UsageError(
                f"{where}: url {shown!r} carries a password; put no secrets in the hosts file, "
                f'log in with a key (ssh_options = ["-i", KEY]); {expected}'
            )
        if not _USER.match(userinfo):
            raise UsageError(f"{where}: url {shown!r} has an unusable user name {userinfo!r}; {expected}")
        user = userinfo
    port: int | None = None
    host = netloc
    six = re.match(r"^(\[[^\]]*\])(?::(.*))?$", netloc)
    if six:
        host, port_text = six.group(1), six.group(2)
    elif netloc.count(":") == 1:
        host, port_text = netloc.split(":")
    elif ":" in netloc:
        raise UsageError(
            f"{where}: url {shown!r}: an IPv6 address goes in brackets, ssh://[::1]:22; {expected}"
        )
    else:
        port_text = None
    if port_text is not None:
        if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            raise UsageError(
                f"{where}: url {shown!r} has port {port_text!r}, expected 1 to 65535; {expected}"
            )
        port = int(port_text)
    bracketed = _IPV6.match(host)
    if bracketed:
        host = bracketed.group(1)
    elif not _HOSTNAME.match(host):
        raise UsageError(f"{where}: url {shown!r} has no usable host name ({host!r}); {expected}")
    return user, host, port


def default_plan_file(host: Host) -> str:
    """Where `fleet clean` keeps a host's sealed plan: in the login's home, named after who logs in where
    (two entries for one machine, say two engines behind two ports, do not share a file)."""
    digest = hashlib.sha256(repr(host.identity).encode()).hexdigest()[:12]
    return f".tamer-fleet-plan-{digest}.json"


def load_hosts(text: str, source: str = "the hosts file") -> tuple[Host, ...]:
    """Parse a hosts file's text; UsageError (exit 2) on anything wrong, naming `source`, entry and key."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(
            f"{source} is not valid TOML: {exc}; expected a [[hosts]] list (see tamer fleet --help)"
        ) from None
    _no_unknown(doc, TOP_KEYS, source)
    version = doc.get("version", 1)
    if version != 1 or isinstance(version, bool):
        raise UsageError(f"{source}: version = {version!r} is not one this tamer reads; expected version = 1")
    defaults_raw = doc.get("defaults", {})
    if not isinstance(defaults_raw, dict):
        raise UsageError(f"{source}: defaults must be a table ([defaults]), got {_kind(defaults_raw)}")
    _no_unknown(defaults_raw, DEFAULT_KEYS, f"{source}: [defaults]")
    defaults = _settings(defaults_raw, f"{source}: [defaults]")
    entries = doc.get("hosts")
    if not isinstance(entries, list) or not entries:
        raise UsageError(
            f'{source} lists no hosts; expected [[hosts]] tables with url = "ssh://user@host" '
            'or hosts = ["ssh://user@host", ...]'
        )
    hosts: list[Host] = []
    by_identity: dict[tuple[str, str, int], str] = {}
    by_name: dict[str, str] = {}
    for i, entry in enumerate(entries, start=1):
        where = f"{source}: hosts[{i}]"
        if isinstance(entry, str):
            entry = {"url": entry}
        if not isinstance(entry, dict):
            raise UsageError(f"{where} must be a URL string or a table with url = ..., got {_kind(entry)}")
        _no_unknown(entry, HOST_KEYS, where)
        url = entry.get("url")
        if not isinstance(url, str) or not url:
            raise UsageError(f'{where} has no url; expected url = "ssh://user@host[:port]"')
        user, address, port = parse_url(url, where)
        settings = {**defaults, **_settings(entry, where)}
        labels = {**defaults.get("labels", {}), **settings.get("labels", {})}
        name = entry.get("name", url.split("://", 1)[1].rstrip("/"))
        if not isinstance(name, str) or not name.strip() or any(ord(ch) < 32 for ch in name):
            raise UsageError(f"{where}: name must be a non-empty one-line string, got {name!r}")
        host = Host(
            name=name,
            url=url,
            address=address,
            user=user,
            port=port,
            labels=labels,
            policy=settings.get("policy"),
            tamer=settings.get("tamer", DEFAULT_TAMER),
            ssh_options=settings.get("ssh_options", ()),
            connect_timeout=settings.get("connect_timeout", DEFAULT_CONNECT_TIMEOUT),
        )
        plan_file = entry.get("plan_file")
        if plan_file is not None:
            plan_file = _path(plan_file, f"{where}: plan_file")
        host = replace(host, plan_file=plan_file or default_plan_file(host))
        if host.identity in by_identity:
            raise UsageError(
                f"{where} ({url}) is the same host as {by_identity[host.identity]}: each host once, "
                "or the fleet would act on it twice; remove one of them"
            )
        if name in by_name:
            raise UsageError(
                f"{where}: name {name!r} is already used by {by_name[name]}; names must be unique"
            )
        by_identity[host.identity] = f"hosts[{i}]"
        by_name[name] = f"hosts[{i}]"
        hosts.append(host)
    return tuple(hosts)


def read_hosts_file(path: str) -> tuple[Host, ...]:
    """load_hosts on the file at `path`; a missing or unreadable file is a UsageError too."""
    try:
        with open(path, encoding="utf-8") as fh:
            # bounded: --hosts /dev/zero (or a log file named by mistake) must not fill memory; a pipe
            # (--hosts <(make-hosts)) is still read
            text = fh.read(MAX_HOSTS_FILE_CHARS + 1)
    except FileNotFoundError:
        raise UsageError(
            f'hosts file {path} does not exist; expected a TOML file listing [[hosts]] url = "ssh://user@host"'
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(
            f"hosts file {path} could not be read: {exc}; expected a readable TOML file"
        ) from None
    if len(text) > MAX_HOSTS_FILE_CHARS:
        raise UsageError(
            f"hosts file {path} is over {MAX_HOSTS_FILE_CHARS} characters; a hosts file is far smaller: "
            "is it the right file? (nothing was run)"
        )
    return load_hosts(text, f"hosts file {path}")


def _settings(raw: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The per-host (or default) settings in `raw`, checked; keys not given are absent."""
    out: dict[str, Any] = {}
    if "labels" in raw:
        labels = raw["labels"]
        if not isinstance(labels, dict):
            raise UsageError(f'{where}: labels must be a table of strings, e.g. {{ role = "web" }}')
        for key, value in labels.items():
            if not _LABEL.match(key):
                raise UsageError(
                    f"{where}: label name {key!r} must start with a letter or _ and hold only letters, "
                    "digits, _, . and -"
                )
            if not isinstance(value, str) or any(ord(ch) < 32 for ch in value):
                raise UsageError(f"{where}: labels.{key} must be a one-line string, got {value!r}")
        out["labels"] = dict(labels)
    if "policy" in raw:
        out["policy"] = _path(raw["policy"], f"{where}: policy")
    if "tamer" in raw:
        out["tamer"] = _command(raw["tamer"], f"{where}: tamer")
    if "ssh_options" in raw:
        opts = raw["ssh_options"]
        if not isinstance(opts, list) or not all(isinstance(o, str) and "\0" not in o for o in opts):
            raise UsageError(f'{where}: ssh_options must be a list of strings, e.g. ["-i", "~/.ssh/fleet"]')
        out["ssh_options"] = tuple(opts)
    if "connect_timeout" in raw:
        value = raw["connect_timeout"]
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_CONNECT_TIMEOUT:
            raise UsageError(
                f"{where}: connect_timeout must be a whole number of seconds from 1 to {MAX_CONNECT_TIMEOUT}, "
                f"got {value!r}"
            )
        out["connect_timeout"] = value
    return out


def _path(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value or any(ord(ch) < 32 for ch in value):
        raise UsageError(f"{where} must be a one-line path on that host, got {value!r}")
    return value


def _command(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        try:
            words = shlex.split(value)
        except ValueError as exc:
            raise UsageError(f"{where}: {value!r} is not a command line ({exc})") from None
    elif isinstance(value, list) and all(isinstance(w, str) for w in value):
        words = list(value)
    else:
        raise UsageError(
            f'{where} must be a command (a string or a list of strings), e.g. "/usr/local/bin/tamer"'
        )
    if not words or not words[0] or words[0].startswith("-") or any("\0" in w or "\n" in w for w in words):
        raise UsageError(
            f'{where} must start with the program to run, e.g. "tamer" or "sudo -n tamer"; got {value!r}'
        )
    return tuple(words)


def _no_unknown(table: Mapping[str, Any], known: tuple[str, ...], where: str) -> None:
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise UsageError(f"{where}: unknown key {unknown[0]!r}; expected one of {', '.join(known)}")


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    return type(value).__name__
