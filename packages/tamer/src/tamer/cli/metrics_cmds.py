"""`tamer metrics` and `tamer serve`: the host's figures for Prometheus.

`tamer metrics` prints the text exposition format (or writes it for node_exporter's textfile
collector with --textfile DIR); `tamer serve` answers /metrics and / over HTTP from a snapshot a
background thread refreshes. Only argparse is imported at the top (see tamer.cli.app: start-up).

Exit codes: 0 ok; 1 the engine cannot be read, the textfile cannot be written, or --listen's address
cannot be listened on (in use, not this machine's, not allowed); 2 bad input (a malformed --listen,
--refresh, --max-age or --series-limit; a --textfile folder that is missing, not a folder or not
writable). Bad input is refused before the engine is asked anything and nothing is written.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tamer.cli.app import Outcome, parent_parser

if TYPE_CHECKING:
    from tamer.engine import Engine
    from tamer.metrics import CleanFacts
    from tamer.snapshots import Snapshot

DEFAULT_LISTEN = "127.0.0.1:9470"
DEFAULT_REFRESH = "60s"
DEFAULT_MAX_AGE = "60s"
MAX_SERIES_LIMIT = 100_000
RECORD_EVERY_S = 3600.0  # serve adds a snapshot to the history at most hourly: a trend, not a scrape log
SIZING_CHOICES = ("auto", "local", "engine")  # as tamer.collect.SIZING_CHOICES


def _seconds(flag: str, minimum: float) -> Any:
    def parse(text: str) -> float:
        from tamer.errors import UsageError
        from tamer.report.units import parse_duration

        try:
            seconds = parse_duration(text).total_seconds()
        except UsageError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        if seconds < minimum:
            raise argparse.ArgumentTypeError(f"{flag} must be at least {minimum:g}s, got {text!r}")
        return seconds

    return parse


def _series_limit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= MAX_SERIES_LIMIT:
        raise argparse.ArgumentTypeError(
            f"expected a whole number from 0 to {MAX_SERIES_LIMIT}, got {text!r}"
        )
    return value


def _listen(text: str) -> tuple[str, int]:
    from tamer.errors import UsageError
    from tamer.serve import parse_listen

    try:
        return parse_listen(text)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix(f"bad --listen {text!r}: ")) from None


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    shared = parent_parser()
    shared.add_argument(
        "--series-limit",
        type=_series_limit,
        default=500,
        metavar="N",
        help="per-object families (volumes, container logs, owners) keep their N largest objects; the rest "
        'are summed into one "__other__" series (default 500; tamer_series_folded says how many)',
    )
    shared.add_argument(
        "--sizing", choices=SIZING_CHOICES, default="auto", help="as tamer df --sizing (default auto)"
    )

    metrics = sub.add_parser(
        "metrics",
        parents=[common, shared],
        help="print the Prometheus text format (or write a textfile)",
        description="Print the host's figures in the Prometheus text format, from the latest snapshot of "
        "this engine when it is recent enough (--max-age), else from a new one (recorded in the history). "
        "Exit codes: 0 ok, 1 engine or write error, 2 bad input.",
    )
    metrics.add_argument(
        "--textfile",
        metavar="DIR",
        help="write DIR/tamer.prom atomically (temp file, fsync, rename) instead of printing; DIR is "
        "node_exporter's --collector.textfile.directory",
    )
    metrics.add_argument(
        "--max-age",
        type=_seconds("--max-age", 0),
        default=DEFAULT_MAX_AGE,
        metavar="DURATION",
        help="reuse a recorded snapshot at most this old (default 60s; 0s: always take a new one)",
    )
    metrics.set_defaults(handler=run_metrics)

    serve = sub.add_parser(
        "serve",
        parents=[common, shared],
        help="serve /metrics (Prometheus) and a status page over HTTP",
        description="Serve /metrics and / from a snapshot refreshed in the background every --refresh "
        "(a scrape never walks the disk). Exit codes: 0 stopped by SIGTERM, 1 engine error or an address "
        "that cannot be listened on (port in use), 2 bad input, 130 interrupted.",
    )
    serve.add_argument(
        "--listen",
        type=_listen,
        default=DEFAULT_LISTEN,
        metavar="HOST:PORT",
        help=f"where to listen (default {DEFAULT_LISTEN}; [::1]:PORT for IPv6; port 0: any free one)",
    )
    serve.add_argument(
        "--refresh",
        type=_seconds("--refresh", 1),
        default=DEFAULT_REFRESH,
        metavar="DURATION",
        help="take a new snapshot this long after the previous one ended (default 60s, at least 1s)",
    )
    serve.set_defaults(handler=run_serve)


def _version() -> str:
    from tamer import __version__

    return __version__


def _engine_key(engine: Engine) -> str:
    """The engine's identity as a Snapshot names it (inventory.engine_identity, else the address)."""
    from tamer.inventory import engine_identity

    return engine_identity(engine.info()) or engine.where


def _warn(message: str) -> None:
    import warnings

    from tamer.state import StateUnavailable

    warnings.warn(message, StateUnavailable, stacklevel=2)


def _latest(engine_key: str, warn: Callable[[str], None]) -> Snapshot | None:
    from tamer import snapshots

    try:
        return snapshots.latest(engine_key)
    except snapshots.SnapshotsUnavailable as exc:
        warn(f"{exc}; taking a new snapshot")
        return None


def _record(snap: Snapshot, warn: Callable[[str], None]) -> bool:
    from tamer import snapshots
    from tamer.errors import TamerError

    try:
        snapshots.record(snap)
    except TamerError as exc:  # the figures are still right; only the history misses one point
        warn(f"the snapshot was not added to the history: {exc}")
        return False
    return True


def _take(engine: Engine, args: argparse.Namespace, progress_enabled: bool) -> Snapshot:
    from tamer.cli.progress import Progress
    from tamer.snapshots import take_snapshot

    progress = Progress("sizing", enabled=progress_enabled)
    try:
        return take_snapshot(engine, sizing=args.sizing, progress=progress)
    finally:
        progress.close()


def current_snapshot(
    engine: Engine, args: argparse.Namespace, now: float, *, progress: bool
) -> tuple[Snapshot, bool]:
    """The latest recorded snapshot of this engine when taken at most args.max_age ago (and, when
    --sizing is given, sized that way), else a new one, recorded. Returns (snapshot, reused).

    A snapshot stamped in the future (the clock went back since) is never reused: its age is unknown."""
    key = _engine_key(engine)
    if args.max_age > 0:
        last = _latest(key, _warn)
        if (
            last is not None
            and 0 <= now - last.taken_at <= args.max_age
            and (args.sizing == "auto" or last.sizing == args.sizing)
        ):
            return last, True
    snap = _take(engine, args, progress)
    _record(snap, _warn)
    return snap, False


def run_metrics(args: argparse.Namespace) -> Outcome:
    import time

    from tamer.engine import connect
    from tamer.metrics import build_families, render
    from tamer.metrics_io import check_textfile_dir, read_clean_facts, write_textfile

    folder = check_textfile_dir(args.textfile) if args.textfile is not None else None  # before any work
    engine = connect(args.host)
    snap, reused = current_snapshot(engine, args, time.time(), progress=not (args.json or args.quiet))
    clean = read_clean_facts(engine.where)  # the journal keys runs by the address, as clean does
    if not clean.readable:
        _warn(
            "the clean journal could not be read: the tamer_last_clean_* and tamer_journal_unfinished "
            "families have no samples"
        )
    families = build_families(snap, clean, now=time.time(), limit=args.series_limit, version=_version())
    text = render(families)
    series = sum(len(f.samples) for f in families)
    folded = {
        s.labels[0][1]: int(s.value) for f in families if f.name == "tamer_series_folded" for s in f.samples
    }
    data: dict[str, Any] = {
        "engine": snap.engine,
        "snapshot_taken_at": snap.taken_at,
        "snapshot_reused": reused,
        "series": series,
        "folded": folded,
        "textfile": None,
    }
    if folder is not None:
        target = write_textfile(folder, text)
        data["textfile"] = str(target)
        how = "the latest recorded snapshot" if reused else "a new snapshot"
        return Outcome(
            data, f"wrote {target}: {series} samples from {how} ({_ago(time.time() - snap.taken_at)})"
        )
    data["text"] = text
    return Outcome(data, text.removesuffix("\n"))


def _ago(seconds: float) -> str:
    return f"taken {max(0.0, seconds):.0f}s ago"


def run_serve(args: argparse.Namespace) -> Outcome:
    import signal
    import threading
    import time

    from tamer.engine import connect
    from tamer.metrics_io import read_clean_facts
    from tamer.serve import Keeper, bind, log_to_stderr, serve_on, served_address

    host, port = args.listen
    server = bind(host, port)  # first: a port in use is refused before anything starts
    # warnings go to stderr as they happen (not at exit, as a short command's do): serve runs for weeks
    log = log_to_stderr
    keeper: Keeper | None = None
    serving = False
    stopped = threading.Event()
    previous = signal.getsignal(signal.SIGTERM)
    # before anything serves: a SIGTERM that comes once the port answers (a supervisor, a test) must
    # stop it cleanly, not kill it with the default action while the handler is still to be set
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda signum, frame: stopped.set())
    try:
        engine = connect(args.host)
        key = _engine_key(engine)
        last_recorded = [float("-inf")]

        def refresher() -> tuple[Snapshot, CleanFacts]:
            snap = _take(engine, args, progress_enabled=False)
            now = time.monotonic()
            if now - last_recorded[0] >= RECORD_EVERY_S and _record(snap, log):
                last_recorded[0] = now
            return snap, read_clean_facts(engine.where)

        keeper = Keeper(refresher, args.refresh, limit=args.series_limit, version=_version(), log=log)
        seed = _latest(key, log)
        if seed is not None:  # served, with its true age, until the first refresh ends
            age = max(0.0, time.time() - seed.taken_at)
            keeper.seed(seed, read_clean_facts(engine.where), time.monotonic() - age)
        serve_on(server, keeper)
        serving = True
        address = served_address(server)
        if not args.quiet:
            log(
                f"serving {address}/metrics and {address}/ for {engine.where}; a new snapshot every "
                f"{args.refresh:g}s; stop with Ctrl-C or SIGTERM"
            )
        keeper.start()
        while not stopped.wait(0.5):
            pass
    finally:
        if keeper is not None:
            keeper.stop()
        if serving:
            server.shutdown()  # waits for serve_forever to return (it never started otherwise)
        server.server_close()
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, previous)
    return Outcome({"listen": address, "stopped_by": "SIGTERM"}, f"stopped serving {address} (SIGTERM)")
