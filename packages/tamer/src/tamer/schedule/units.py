"""systemd units for tamer, as text: pure (no file, no process, no clock).

`every` turns a period such as 1d into a timer: a period that divides a day or an hour evenly
(or is a week) becomes a calendar event with Persistent=true, so a run missed while the machine
was off happens at the next boot; any other period (3d, 90m) becomes a monotonic timer
(OnBootSec + OnUnitActiveSec), which has no notion of missed runs. Every timer gets a
RandomizedDelaySec (a tenth of the period, at most an hour) so a fleet does not clean at the
same second.

Quoting: systemd splits ExecStart= on spaces (double quotes group), expands `%` specifiers
everywhere and `$VAR` in ExecStart=; a path is written quoted, with `%` as `%%` and `$` as `$$`.
A value systemd cannot carry (a newline, a NUL) is refused, not mangled.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from tamer.errors import UsageError

# The first line of every unit tamer writes: `tamer schedule remove` deletes a file only when it
# starts with this line (and never a file without it, whatever its name).
MARKER = (
    "# Written by `tamer schedule install`; `tamer schedule remove` deletes this file. (tamer-schedule v1)"
)
UNIT_PREFIX = "tamer-"
# The second line: the SHA-256 of everything after it, as tamer wrote it. A unit whose content no
# longer matches was edited (`systemctl edit --full`, an editor): install does not overwrite it and
# remove does not delete it, since either would silently throw the edit away.
DIGEST_PREFIX = "# tamer-schedule-digest: sha256="

_EVERY = re.compile(r"^([0-9]{1,7})(m|min|h|d|w)$")
_UNIT_SECONDS = {"m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}
MIN_EVERY_S = 15 * 60  # a clean walks the data-root: more often than this, runs would queue up
MAX_EVERY_S = 366 * 86400
MAX_RANDOM_DELAY_S = 3600
_PLAIN = re.compile(r"^[A-Za-z0-9_./:=@+,%$-]+$")


@dataclass(frozen=True)
class Every:
    """A period, as the user wrote it and as a [Timer] section says it."""

    text: str
    seconds: int
    calendar: str | None  # OnCalendar= expression, or None for a monotonic timer

    @property
    def random_delay_s(self) -> int:
        return min(self.seconds // 10, MAX_RANDOM_DELAY_S)

    def timer_lines(self) -> list[str]:
        if self.calendar is not None:
            lines = [f"OnCalendar={self.calendar}", "Persistent=true"]
        else:
            # OnUnitActiveSec alone never fires for a unit that has never run: start after boot too
            lines = ["OnBootSec=15min", f"OnUnitActiveSec={systemd_span(self.seconds)}"]
        return [*lines, f"RandomizedDelaySec={systemd_span(self.random_delay_s)}"]


def parse_every(text: str, option: str = "--every") -> Every:
    """'1h', '6h', '1d', '1w', '30m', '3d' -> Every; anything else is a UsageError.

    >>> parse_every("6h").calendar
    '*-*-* 00/6:00:00'
    >>> parse_every("3d").calendar is None
    True
    """
    shown = text if len(text) <= 40 else text[:37] + "..."
    match = _EVERY.fullmatch(text)  # not match(): `$` would let "1d\n" through
    if not match:
        raise UsageError(
            f"{option} {shown!r} is not a period; expected a whole number and a unit m, h, d or w, "
            "e.g. 1h, 6h, 1d or 1w (nothing was written)"
        )
    seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds < MIN_EVERY_S:
        raise UsageError(
            f"{option} {shown!r} is too often: expected at least 15m (each run walks the data-root); "
            "nothing was written"
        )
    if seconds > MAX_EVERY_S:
        raise UsageError(f"{option} {shown!r} is too long: expected at most 366d (nothing was written)")
    return Every(text, seconds, _calendar(seconds))


def _calendar(seconds: int) -> str | None:
    """A calendar event that fires every `seconds`, when there is one that is exact."""
    if seconds == 604800:
        return "weekly"
    if seconds == 86400:
        return "daily"
    if seconds == 3600:
        return "hourly"
    if seconds < 3600 and 3600 % seconds == 0 and seconds % 60 == 0:
        return f"*-*-* *:00/{seconds // 60}:00"
    if seconds < 86400 and 86400 % seconds == 0 and seconds % 3600 == 0:
        return f"*-*-* 00/{seconds // 3600}:00:00"
    return None


def systemd_span(seconds: int) -> str:
    """Seconds as a systemd time span: 3600 -> '1h', 5400 -> '90min', 259200 -> '3d'."""
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _check_value(what: str, value: str) -> None:
    if any(ch in value for ch in "\n\r\0"):
        raise UsageError(
            f"{what} {value!r} contains a newline or NUL, which a systemd unit cannot carry; "
            "use a path without one (nothing was written)"
        )
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # bytes os.fsdecode kept as surrogates: a unit file is UTF-8 text
        shown = value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        raise UsageError(
            f"{what} {shown!r} is not valid UTF-8, which a systemd unit (UTF-8 text) cannot carry; "
            "rename it to a UTF-8 name (nothing was written)"
        ) from None


def quote_arg(arg: str) -> str:
    """One ExecStart= argument: as is when plain, else double-quoted with `\\` and `"` escaped; `%` and
    `$` doubled either way (systemd expands specifiers and variables in ExecStart=)."""
    _check_value("the argument", arg)
    escaped = arg.replace("%", "%%").replace("$", "$$")
    if arg and _PLAIN.match(arg):
        return escaped
    escaped = escaped.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def environment_line(name: str, value: str) -> str:
    """Environment="NAME=VALUE", escaped for systemd (specifiers as %%, quotes and backslashes escaped)."""
    _check_value(f"${name}", value)
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    return f'Environment="{name}={escaped}"'


@dataclass(frozen=True)
class Setup:
    """Everything the units depend on, resolved by the caller (absolute paths, the manager)."""

    tamer: tuple[str, ...]  # how to start tamer: ("/usr/local/bin/tamer",) or (python, "-m", "tamer")
    policy: str  # the policy file's real path
    every: Every  # for the clean timer
    record_every: Every | None  # None: no record units
    watch: bool
    user: bool  # a user manager's units (systemctl --user), else the system manager's
    environment: tuple[tuple[str, str], ...]  # (name, value), e.g. TAMER_STATE_DIR, DOCKER_HOST


@dataclass(frozen=True)
class Unit:
    name: str
    text: str


# What keeps tamer out of the way without hiding anything it needs: lower CPU and I/O priority,
# no privilege gain, private files. No ProtectSystem=/ProtectHome=/PrivateTmp=: tamer reads and
# writes the data-root (/var/lib/docker), volumes placed anywhere (/srv, /mnt, /home) and
# backups where the policy says; a read-only or hidden mount there would break a clean.
# KillSignal=SIGINT: tamer stops a clean cleanly on an interrupt (journaled, resumable).
_HARDENING = (
    "Nice=10",
    "IOSchedulingClass=idle",
    "CPUSchedulingPolicy=batch",
    "NoNewPrivileges=yes",
    "UMask=0077",
    "RestrictRealtime=yes",
    "LockPersonality=yes",
    "KillSignal=SIGINT",
)


def _exec(setup: Setup, *args: str) -> str:
    return "ExecStart=" + " ".join(quote_arg(a) for a in (*setup.tamer, *args))


def seal(body: str) -> str:
    """A unit's text: tamer's marker, the digest of `body`, then `body`."""
    # systemd joins a line that ends in a backslash with the next one (the next setting would be
    # swallowed into this value): every value is written so that no line ends in one
    joined = [line for line in body.split("\n") if line.endswith("\\")]
    if joined:
        raise ValueError(f"a unit line ends in a backslash (systemd would join the next line): {joined[0]!r}")
    digest = hashlib.sha256(body.encode("utf-8")).hexdigest()
    return f"{MARKER}\n{DIGEST_PREFIX}{digest}\n{body}"


def is_edited(text: str) -> bool:
    """True when a unit that starts with tamer's marker is no longer what tamer wrote (or says
    nothing of what that was: no digest line)."""
    _, _, rest = text.partition("\n")
    second, _, body = rest.partition("\n")
    if not second.startswith(DIGEST_PREFIX):
        return True
    return second[len(DIGEST_PREFIX) :] != hashlib.sha256(body.encode("utf-8")).hexdigest()


def _service(setup: Setup, description: str, exec_line: str, *, oneshot: bool) -> str:
    unit = ["[Unit]", f"Description={description}"]
    if not setup.user:
        unit += ["After=docker.service"]  # ordering only: no dependency on how docker is started
    service = ["", "[Service]", f"Type={'oneshot' if oneshot else 'simple'}", exec_line]
    service += [environment_line(name, value) for name, value in setup.environment]
    service += list(_HARDENING)
    if not oneshot:
        service += ["Restart=on-failure", "RestartSec=30s"]
        service += ["", "[Install]", f"WantedBy={'default.target' if setup.user else 'multi-user.target'}"]
    return seal("\n".join([*unit, *service]) + "\n")


def _timer(description: str, every: Every) -> str:
    lines = ["[Unit]", f"Description={description}", "", "[Timer]", *every.timer_lines()]
    lines += ["", "[Install]", "WantedBy=timers.target"]
    return seal("\n".join(lines) + "\n")


def _describe(text: str) -> str:
    # Description= expands specifiers too
    return text.replace("%", "%%")


def _quoted_path(path: str) -> str:
    """A path inside free text (Description=), in quotes: a path that ends in a backslash would
    otherwise end the line in one, and systemd would join the next setting to it."""
    return f'"{path}"'


def make_units(setup: Setup) -> list[Unit]:
    """The units for `setup`, in the order they are listed: clean (service, timer), record, watch."""
    _check_value("the policy path", setup.policy)
    policy = setup.policy
    units = [
        Unit(
            "tamer-clean.service",
            _service(
                setup,
                _describe(f"tamer: clean Docker by the policy {_quoted_path(policy)}"),
                _exec(setup, "clean", "--apply", "--yes", "--policy", policy),
                oneshot=True,
            ),
        ),
        Unit("tamer-clean.timer", _timer(f"tamer: clean Docker every {setup.every.text}", setup.every)),
    ]
    if setup.record_every is not None:
        units += [
            Unit(
                "tamer-record.service",
                _service(
                    setup,
                    "tamer: record a snapshot of Docker's disk use (tamer history)",
                    _exec(setup, "record"),
                    oneshot=True,
                ),
            ),
            Unit(
                "tamer-record.timer",
                _timer(f"tamer: record a snapshot every {setup.record_every.text}", setup.record_every),
            ),
        ]
    if setup.watch:
        units.append(
            Unit(
                "tamer-watch.service",
                _service(
                    setup,
                    "tamer: record when images and volumes are used (for LRU cleaning)",
                    _exec(setup, "watch"),
                    oneshot=False,
                ),
            )
        )
    return units


def to_enable(units: list[Unit]) -> list[str]:
    """The units `systemctl enable --now` takes: the timers, and the services no timer starts."""
    timed = {u.name.removesuffix(".timer") for u in units if u.name.endswith(".timer")}
    return [
        u.name
        for u in units
        if u.name.endswith(".timer")
        or (u.name.endswith(".service") and u.name.removesuffix(".service") not in timed)
    ]


def systemctl(user: bool, *args: str) -> str:
    return " ".join(["systemctl", *(["--user"] if user else []), *args])


def is_tamer_unit(head: str) -> bool:
    """True when a unit file's text starts with tamer's marker line."""
    return head.split("\n", 1)[0] == MARKER
