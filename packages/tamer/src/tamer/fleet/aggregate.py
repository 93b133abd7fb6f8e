"""What each host answered, and what the fleet adds up to. Pure: replies in, reports and totals out.

A host's reply is judged by what came back, in this order: ssh timed out; stdout holds a tamer `--json`
envelope (then the remote tamer's own status and messages are the host's: ok, partial, error, usage,
interrupted); ssh exited 255 (it could not connect or log in: unreachable); the remote shell exited 127
or 126 (no tamer there, or not executable); anything else is a reply tamer cannot read. Every host in the
hosts file ends with exactly one status: none is dropped, and the fleet's exit code is 0 only when every
host is ok (else 3, partial).
"""

from __future__ import annotations

import enum
import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from tamer.fleet.hosts import Host
from tamer.fleet.ssh import MAX_REPLY_BYTES, Reply

EXIT_OK = 0
EXIT_PARTIAL = 3
MESSAGE_TAIL = 400  # characters of ssh's or the remote shell's stderr kept in a message


class HostStatus(enum.StrEnum):
    OK = "ok"
    PARTIAL = "partial"  # the remote tamer did part of it (exit 3)
    ERROR = "error"  # the remote tamer failed (its engine, its state...): its message says why
    USAGE = "usage"  # the remote tamer refused its input (a bad policy path, a changed plan...)
    INTERRUPTED = "interrupted"
    UNREACHABLE = "unreachable"  # ssh could not connect or log in (exit 255, no envelope)
    NO_TAMER = "no-tamer"  # the remote shell found no such command (127) or could not run it (126)
    TIMEOUT = "timeout"
    BAD_REPLY = "bad-reply"  # something answered, but not with tamer's --json envelope
    NOT_RUN = "not-run"  # tamer did not run this step there (its plan failed, or it is not in the plan file)


_SPACE = re.compile(r"\s*")  # what json.loads allows around a document
_STATUS_BY_EXIT = {0: HostStatus.OK, 2: HostStatus.USAGE, 3: HostStatus.PARTIAL, 130: HostStatus.INTERRUPTED}


@dataclass(frozen=True)
class HostReport:
    """One host's outcome for one remote command. envelope: the remote tamer's, when one came back."""

    host: Host
    status: HostStatus
    message: str = ""
    exit_code: int | None = None
    envelope: Mapping[str, Any] | None = None
    seconds: float = 0.0

    @property
    def data(self) -> Any:
        return self.envelope.get("data") if self.envelope is not None else None

    @property
    def warnings(self) -> list[str]:
        errors = self.envelope.get("errors") if self.envelope is not None else None
        return [str(e) for e in errors or [] if str(e).startswith("warning:")]

    @property
    def ok(self) -> bool:
        return self.status is HostStatus.OK


def parse_envelope(stdout: str) -> dict[str, Any] | None:
    """The tamer --json envelope in `stdout`, or None. Text a login script printed before it is skipped."""
    # found with str.find and decoded in place (raw_decode), never a Python loop over each character or a
    # copy of the rest per candidate: a reply may be up to fleet.ssh.MAX_REPLY_BYTES
    starts = [0]
    at = stdout.find("\n{")
    while at != -1 and len(starts) < 50:
        starts.append(at + 1)
        at = stdout.find("\n{", at + 1)
    decoder = json.JSONDecoder()
    for start in starts:
        try:
            doc, end = decoder.raw_decode(stdout, _SPACE.match(stdout, start).end())  # type: ignore[union-attr]
        except (ValueError, RecursionError):  # RecursionError: nested past Python's limit (a hostile reply)
            continue
        if _SPACE.match(stdout, end).end() != len(stdout):  # type: ignore[union-attr]
            continue  # more after it: not the envelope that ends the output
        if (
            isinstance(doc, dict)
            and doc.get("version") == 1
            and isinstance(doc.get("exit_code"), int)
            and isinstance(doc.get("errors", []), list)
        ):
            return doc
    return None


def classify(host: Host, reply: Reply, *, timeout: float) -> HostReport:
    """Judge one reply (see the module docstring)."""
    if reply.timed_out:
        return HostReport(
            host,
            HostStatus.TIMEOUT,
            f"no answer from {host.name} within {timeout:g}s; ssh was stopped (a command already running "
            "there may still finish: look there, e.g. `tamer clean --journal`); raise --timeout for slow hosts",
            None,
            None,
            reply.seconds,
        )
    if reply.overflowed:
        return HostReport(
            host,
            HostStatus.BAD_REPLY,
            f"{host.name} sent more than {MAX_REPLY_BYTES // (1024 * 1024)} MiB; ssh was stopped and nothing "
            f"of it was read (a tamer envelope is far smaller: is `{' '.join(host.tamer)}` tamer?)",
            None,
            None,
            reply.seconds,
        )
    envelope = parse_envelope(reply.stdout)
    if envelope is not None:
        code = int(envelope["exit_code"])
        errors = [str(e) for e in envelope.get("errors") or [] if not str(e).startswith("warning:")]
        status = _STATUS_BY_EXIT.get(code, HostStatus.ERROR)
        return HostReport(host, status, "; ".join(errors), code, envelope, reply.seconds)
    said = _tail(reply.stderr) or _tail(reply.stdout)
    command = " ".join(host.tamer)
    if reply.returncode == 255:
        return HostReport(
            host,
            HostStatus.UNREACHABLE,
            f"could not reach {host.name} over ssh ({said or 'ssh exited 255'}); check the address, port, "
            "key and that sshd runs there",
            255,
            None,
            reply.seconds,
        )
    if reply.returncode in (126, 127):
        why = "was not found" if reply.returncode == 127 else "could not be run"
        return HostReport(
            host,
            HostStatus.NO_TAMER,
            f"`{command}` {why} on {host.name} (exit {reply.returncode}: {said or 'no message'}); install "
            'tamer there, or set tamer = "/path/to/tamer" for this host in the hosts file',
            reply.returncode,
            None,
            reply.seconds,
        )
    if reply.returncode is None:
        return HostReport(
            host, HostStatus.ERROR, said or "ssh could not be started", None, None, reply.seconds
        )
    return HostReport(
        host,
        HostStatus.BAD_REPLY,
        f"`{command}` on {host.name} exited {reply.returncode} without tamer's --json envelope "
        f"({said or 'no output'}); is it tamer, and a version with --json?",
        reply.returncode,
        None,
        reply.seconds,
    )


def not_run(host: Host, why: str) -> HostReport:
    return HostReport(host, HostStatus.NOT_RUN, why)


def fleet_exit_code(reports: Iterable[HostReport]) -> int:
    """0 when every host is ok, else 3 (partial): a host that did not report is never a success."""
    return EXIT_OK if all(r.ok for r in reports) else EXIT_PARTIAL


def status_counts(reports: Iterable[HostReport]) -> dict[str, int]:
    return dict(Counter(r.status.value for r in reports))


# -- df ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DfSummary:
    """A host's `tamer df --json` in a few numbers: bytes per kind, all of it, and what could go."""

    size: int
    safe: int
    needs_decision: int
    by_kind: Mapping[str, int] = field(default_factory=dict)
    sizing: str = ""
    notes: tuple[str, ...] = ()

    @property
    def reclaimable(self) -> int:
        return self.safe + self.needs_decision


def byte_count(value: Any, what: str) -> int:
    """`value` as a count of bytes: a whole number, 0 or more. int() would take "12", 1.9, True and -5
    from a reply (another version, a broken or hostile host) and print a fleet total that is wrong."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{what} is {value!r}, expected a whole number of bytes, 0 or more")
    return value


def _listed(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise ValueError(f"{what} is {type(value).__name__}, expected a list")
    return value


def df_summary(data: Any) -> DfSummary:
    """The numbers in one host's df data; ValueError when it is not df data this tamer can read."""
    try:
        by_kind: dict[str, int] = {}
        for t in _listed(data["totals"], "totals"):
            kind = t["kind"]
            if not isinstance(kind, str) or kind in by_kind:
                raise ValueError(f"totals lists kind {kind!r} twice or not as a name")
            by_kind[kind] = byte_count(t["size"], f"the size of {kind}")
        return DfSummary(
            size=sum(by_kind.values()),
            safe=byte_count(data["safe_bytes"], "safe_bytes"),
            needs_decision=byte_count(data["decision_bytes"], "decision_bytes"),
            by_kind=by_kind,
            sizing=str(data.get("sizing", "")),
            notes=tuple(str(n) for n in data.get("notes") or ()),
        )
    except (KeyError, TypeError, ValueError, OverflowError) as exc:  # OverflowError: int(1e400)
        raise ValueError(
            f"its df data lacks the totals this tamer reads ({type(exc).__name__}: {exc})"
        ) from None


@dataclass(frozen=True)
class FleetDf:
    """Per-host summaries (None where the host did not report) and their sum over the hosts that did."""

    reports: tuple[HostReport, ...]
    summaries: tuple[DfSummary | None, ...]
    total: DfSummary

    @property
    def reported(self) -> int:
        return sum(s is not None for s in self.summaries)


def aggregate_df(reports: Sequence[HostReport]) -> FleetDf:
    """Sum the df of every host that answered ok; a host whose data cannot be read becomes bad-reply."""
    fixed: list[HostReport] = []
    summaries: list[DfSummary | None] = []
    for report in reports:
        summary = None
        if report.ok:
            try:
                summary = df_summary(report.data)
            except ValueError as exc:
                report = replace(report, status=HostStatus.BAD_REPLY, message=f"{report.host.name}: {exc}")
        fixed.append(report)
        summaries.append(summary)
    present = [s for s in summaries if s is not None]
    kinds: Counter[str] = Counter()
    for s in present:
        kinds.update(s.by_kind)
    total = DfSummary(
        size=sum(s.size for s in present),
        safe=sum(s.safe for s in present),
        needs_decision=sum(s.needs_decision for s in present),
        by_kind=dict(kinds),
    )
    return FleetDf(tuple(fixed), tuple(summaries), total)


# -- plan and clean ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlanSummary:
    plan_id: str
    actions: int
    frees: int
    kept: int


def plan_summary(data: Any) -> PlanSummary:
    """A host's `tamer plan --json` data in a few numbers; ValueError when it is not a plan."""
    try:
        plan_id = data["plan_id"]
        if not isinstance(plan_id, str) or not plan_id:
            raise ValueError("no plan id")
        return PlanSummary(
            plan_id,
            len(_listed(data["actions"], "actions")),
            byte_count(data["total_bytes"], "total_bytes"),
            len(_listed(data["refusals"], "refusals")),
        )
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise ValueError(f"its plan data lacks what this tamer reads ({type(exc).__name__}: {exc})") from None


def check_plans(
    reports: Sequence[HostReport],
) -> tuple[tuple[HostReport, ...], tuple[PlanSummary | None, ...]]:
    """Each ok report's plan summary (None elsewhere); a reply that is not a plan becomes bad-reply."""
    fixed: list[HostReport] = []
    summaries: list[PlanSummary | None] = []
    for report in reports:
        summary = None
        if report.ok:
            try:
                summary = plan_summary(report.data)
            except ValueError as exc:
                report = replace(report, status=HostStatus.BAD_REPLY, message=f"{report.host.name}: {exc}")
        fixed.append(report)
        summaries.append(summary)
    return tuple(fixed), tuple(summaries)


@dataclass(frozen=True)
class ApplySummary:
    plan_id: str
    reclaimed: int
    steps: Mapping[str, int]  # status -> count
    kept: tuple[str, ...]  # "kind name: why" for every step that was skipped or failed


def apply_summary(data: Any) -> ApplySummary | None:
    """A host's `tamer clean --apply --json` data in a few numbers; None when it carries no result."""
    if not isinstance(data, Mapping) or "steps" not in data:
        return None
    try:
        steps = _listed(data["steps"], "steps")
        kept = tuple(
            f"{s.get('kind')} {s.get('name')}: {s.get('status')}, {s.get('detail') or s.get('code')}"
            for s in steps
            if s.get("status") in ("skipped", "failed")
        )
        return ApplySummary(
            str(data.get("plan_id", "")),
            byte_count(data.get("reclaimed") or 0, "reclaimed"),
            dict(Counter(str(s.get("status")) for s in steps)),
            kept,
        )
    except (TypeError, ValueError, AttributeError, OverflowError):
        return None


def apply_message(report: HostReport, summary: ApplySummary | None) -> HostReport:
    """A partial apply says which objects stayed and why (the remote tamer's own words)."""
    if summary is None or not summary.kept or report.message:
        return report
    return replace(report, message="; ".join(summary.kept))


def _tail(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    out = " / ".join(lines[-3:])
    return out if len(out) <= MESSAGE_TAIL else "..." + out[-MESSAGE_TAIL:]
