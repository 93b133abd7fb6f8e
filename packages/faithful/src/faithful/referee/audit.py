"""The logprob audit: is the logprob an engine reported ``log q`` of the distribution it sampled from?

An engine that samples with temperature and truncation but reports the logprob of the raw
model distribution (or of something else) sends RL training off-policy: the importance ratios
are computed against the wrong policy. Given what the engine saw (the full logits, or the
top-k logprobs of the raw distribution), the sampler settings (a faithful spec or Hugging Face
style keys), the token it chose and the logprob it reported, the audit says per record whether
the reported number is ``log q`` of the processed distribution, of the raw one, both (the
settings leave this token's probability unchanged), or neither, and how far off it is.

From top-k logprobs alone the processed distribution is known only when the settings cannot
reach the unseen tail. The audit completes the tail two extreme ways (as few tokens as the
smallest seen probability allows, and spread over the whole vocabulary); when both give the same
processed probabilities and keep no tail token, they are exact, else the record's processed
logprob is "undetermined" and only the raw comparison is made.

Example:
    >>> import numpy as np
    >>> z = np.log(np.array([[0.5, 0.3, 0.2]]))
    >>> audit = audit_logprobs(z, [0], [np.log(0.5 / 0.8)], "top-p:0.6")
    >>> audit.records[0].verdict, audit.summary()["verdict"]
    ('processed', 'processed')
"""

from __future__ import annotations

import json
import math
import stat
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from faithful.errors import FaithfulError
from faithful.processors import check_logits, log_softmax
from faithful.referee.settings import sampler_from_settings
from faithful.samplers import Sampler

__all__ = [
    "AuditInputError",
    "LogprobAudit",
    "RecordAudit",
    "audit_file",
    "audit_logprobs",
    "audit_records",
    "iter_records",
    "read_records",
]

VERDICTS = ("processed", "raw", "both", "neither", "undetermined")
DEFAULT_TOL = 1e-3  # nats: engines compute in float32 or bfloat16
_TAIL_SPREAD = 2**17  # tokens the unseen tail is spread over when the record gives no vocab_size
# The largest vocabulary a record may state (the conformance matrix's limit; real ones are under 300k
# ids): the tail is completed as arrays of that size, and vocab_size 10**20 was an internal error.
MAX_VOCAB = 2**20


class AuditInputError(FaithfulError):
    """A record of the audit is malformed (the message names the record and the field)."""


@dataclass(frozen=True)
class RecordAudit:
    """The audit of one record.

    Attributes:
        index: the record's position (0-based; the JSONL line is index + 1 for a file without blanks).
        id: the record's own ``id`` field, if any.
        token: the chosen token. reported: the logprob the engine reported.
        processed: ``log q[token]`` of the processed distribution (``-inf`` when the settings give the
            token probability 0), or None when it cannot be known from the record (top-k input).
        raw: ``log p[token]`` of the raw distribution, or None (top-k input without the token).
        off_processed, off_raw: ``reported - processed`` and ``reported - raw`` (None when unknown;
            ``inf`` when the reference is ``-inf``).
        verdict: "processed", "raw", "both", "neither" or "undetermined".
        token_possible: False when the chosen token has probability 0 under the stated settings (the
            engine did not sample from them), None when unknown.
    """

    index: int
    id: Any
    token: int
    reported: float
    processed: float | None
    raw: float | None
    off_processed: float | None
    off_raw: float | None
    verdict: str
    token_possible: bool | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class LogprobAudit:
    """Per-record audits and their totals (:meth:`summary`)."""

    records: tuple[RecordAudit, ...]
    tol: float

    def summary(self) -> dict[str, Any]:
        """Counts per verdict, the largest deviations, and one overall verdict.

        The overall verdict is "processed" (or "raw") when every record is that or "both", "both"
        when every record is "both", "neither" when no record matches either, else "mixed".
        """
        counts = {v: sum(r.verdict == v for r in self.records) for v in VERDICTS}
        n = len(self.records)
        decided = [r for r in self.records if r.verdict != "undetermined"]
        if not decided:
            overall = "undetermined"
        elif all(r.verdict == "both" for r in decided):
            overall = "both"
        elif all(r.verdict in ("processed", "both") for r in decided):
            overall = "processed"
        elif all(r.verdict in ("raw", "both") for r in decided):
            overall = "raw"
        elif all(r.verdict == "neither" for r in decided):
            overall = "neither"
        else:
            overall = "mixed"

        def worst(offs: list[float | None]) -> float | None:
            vals = [abs(x) for x in offs if x is not None]
            return max(vals) if vals else None

        return {
            "records": n,
            "counts": counts,
            "verdict": overall,
            "impossible_tokens": sum(r.token_possible is False for r in self.records),
            "max_abs_off_processed": worst([r.off_processed for r in self.records]),
            "max_abs_off_raw": worst([r.off_raw for r in self.records]),
            "tol": self.tol,
        }

    def to_dict(self) -> dict[str, Any]:
        return {"summary": self.summary(), "records": [r.to_dict() for r in self.records]}


def _close(a: float, b: float, tol: float) -> bool:
    if math.isinf(a) or math.isinf(b):
        return a == b
    return abs(a - b) <= tol * max(1.0, abs(b))


def _judge(
    index: int,
    rid: Any,
    token: int,
    reported: float,
    processed: float | None,
    raw: float | None,
    tol: float,
) -> RecordAudit:
    def off(ref: float | None) -> float | None:
        if ref is None:
            return None
        if math.isinf(ref) or math.isinf(reported):
            return 0.0 if ref == reported else math.inf
        return reported - ref

    on_proc = processed is not None and _close(reported, processed, tol)
    on_raw = raw is not None and _close(reported, raw, tol)
    if on_proc and on_raw:
        verdict = "both"
    elif on_proc:
        verdict = "processed"
    elif on_raw:
        verdict = "raw"
    elif processed is None:
        verdict = "undetermined"
    else:
        verdict = "neither"
    possible = None if processed is None else processed > -math.inf
    return RecordAudit(
        index, rid, token, reported, processed, raw, off(processed), off(raw), verdict, possible
    )


def _resolve_sampler(sampler: Sampler | str | Mapping[str, Any]) -> Sampler:
    if isinstance(sampler, Sampler):
        s = sampler
    elif isinstance(sampler, str):
        s = sampler_from_settings(spec=sampler)
    elif isinstance(sampler, Mapping):
        s = sampler_from_settings(hf=sampler)
    else:
        raise AuditInputError(
            f"sampler settings must be a faithful spec, Hugging Face style keys or a Sampler, got {sampler!r}"
        )
    if s.stochastic or s.mirostat is not None:
        raise AuditInputError(
            f"sampler {s.name!r} keeps random or per-row state (XTC, mirostat): its q is not a function of "
            "the record; audit it with the state the engine used, or without those parts"
        )
    return s


def audit_logprobs(
    logits: Any,
    tokens: Sequence[int] | np.ndarray,
    reported: Sequence[float] | np.ndarray,
    sampler: Sampler | str | Mapping[str, Any],
    *,
    history: Sequence[Sequence[int]] | None = None,
    tol: float = DEFAULT_TOL,
) -> LogprobAudit:
    """Audit reported logprobs against the full logits the engine saw.

    Parameters:
        logits: ``(B, V)`` raw logits (``-inf`` allowed). tokens: ``(B,)`` chosen tokens.
        reported: ``(B,)`` the logprobs the engine reported (natural log).
        sampler: the settings: a faithful spec (``"temperature:0.7+top-p:0.9"``), Hugging Face
            style keys (``{"temperature": 0.7, "top_p": 0.9}``) or a :class:`~faithful.samplers.Sampler`.
        history: per-row tokens so far (for penalties). tol: match tolerance in nats (relative
            beyond magnitude 1).

    Returns:
        A :class:`LogprobAudit`.

    Raises:
        AuditInputError, InvalidLogitsError, SamplingParameterError: bad shapes, tokens out of the
            vocabulary, non-finite reported logprobs other than ``-inf``, bad settings.

    Example:
        >>> z = np.log(np.array([[0.5, 0.3, 0.2]]))
        >>> audit_logprobs(z, [2], [np.log(0.2)], {"top_p": 0.6}).records[0].verdict
        'raw'
    """
    s = _resolve_sampler(sampler)
    z = check_logits(np.asarray(logits, dtype=np.float64))
    toks, rep = _check_tokens(tokens, reported, z.shape)
    q = s.distribution(z, history=history)
    raw = log_softmax(z)
    rows = np.arange(z.shape[0])
    with np.errstate(divide="ignore"):
        proc = np.log(q[rows, toks])
    out = tuple(
        _judge(i, None, int(toks[i]), float(rep[i]), float(proc[i]), float(raw[i, toks[i]]), tol)
        for i in range(z.shape[0])
    )
    return LogprobAudit(out, tol)


def _check_tokens(tokens: Any, reported: Any, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    b, v = shape
    toks = np.asarray(tokens)
    rep = np.asarray(reported, dtype=np.float64)
    if toks.shape != (b,) or (toks.size and toks.dtype.kind not in "iu"):
        raise AuditInputError(f"`tokens` must be {b} integer token ids (one per row), got shape {toks.shape}")
    if rep.shape != (b,):
        raise AuditInputError(f"`reported` must be {b} logprobs (one per row), got shape {rep.shape}")
    if toks.size and (toks.min() < 0 or toks.max() >= v):
        raise AuditInputError(
            f"tokens must be in [0, {v}) (the vocabulary of the logits), got {toks.tolist()}"
        )
    if np.any(np.isnan(rep)) or np.any(rep > 1e-9) or np.any(np.isposinf(rep)):
        raise AuditInputError(
            "reported logprobs must be <= 0 (natural log of a probability), got "
            f"{rep[(np.isnan(rep)) | (rep > 1e-9)].tolist()[:5]}"
        )
    return toks.astype(np.int64), rep


# -- top-k logprob input ------------------------------------------------------------------------


def _processed_from_top(
    s: Sampler,
    ids: np.ndarray,
    lps: np.ndarray,
    token: int,
    vocab_size: int | None,
    history: Sequence[int] | None,
) -> float | None:
    """``log q[token]`` from top-k raw logprobs, or None when the unseen tail could change it."""
    probs = np.exp(lps)
    rest = max(0.0, 1.0 - float(probs.sum()))
    k = len(ids)
    # the tail fits in the vocabulary: as few tokens as it takes (each at most the smallest seen
    # positive probability, as top-k implies) up to the room left, or spread over all the room. A
    # tail that needs more tokens than the room (float32 rounding of the sum, or a smallest seen
    # probability of 1e-18) is given the room: its tokens then outweigh the smallest seen one, which
    # can only make the verdict "undetermined", never wrong (it was a 10**11-entry array)
    room = (vocab_size if vocab_size is not None else MAX_VOCAB) - k
    if rest <= 1e-12 or room <= 0:
        completions = [lps]
    else:
        pmin = float(probs[probs > 0].min())  # -inf entries (masked tokens) are no bound on the tail
        few = max(1, math.ceil(min(rest / pmin, float(room))))
        many = min(room, max(few, room if vocab_size is not None else _TAIL_SPREAD))
        completions = [np.concatenate([lps, np.full(m, math.log(rest / m))]) for m in sorted({few, many})]
    hist = None
    if history is not None:  # penalties index the vocabulary: map history onto the seen ids, drop the rest
        pos = {int(t): i for i, t in enumerate(ids)}
        hist = [[pos[t] for t in history if t in pos]]
    qs = [s.distribution(c[None, :], history=hist)[0] for c in completions]
    if any(q[k:].sum() > 0 for q in qs):
        return None
    if len(qs) > 1 and not np.allclose(qs[0][:k], qs[1][:k], rtol=1e-9, atol=1e-15):
        return None
    where = np.flatnonzero(ids == token)
    if not where.size:
        return -math.inf  # unseen tokens are all outside the processed support
    p = float(qs[0][where[0]])
    return math.log(p) if p > 0 else -math.inf


# -- records --------------------------------------------------------------------------------------


def _check_history_ids(history: list[int] | None, v: int | None, what: str, where: str) -> None:
    if history is not None and v is not None and any(t >= v for t in history):
        bad = [t for t in history if t >= v][:5]
        raise AuditInputError(
            f"{where}: `history` holds token ids {bad} outside the vocabulary ({what}: {v})"
        )


def _field(rec: Mapping[str, Any], name: str, where: str) -> Any:
    if name not in rec:
        raise AuditInputError(f"{where}: missing field {name!r}")
    return rec[name]


def _number(x: Any, what: str) -> float:
    if isinstance(x, str) and x.strip().lower() in ("-inf", "-infinity"):
        return -math.inf
    if isinstance(x, bool) or not isinstance(x, int | float):
        raise AuditInputError(f"{what} must be a number (or '-inf'), got {x!r}")
    return float(x)


def _int(x: Any, what: str) -> int:
    if isinstance(x, bool) or not isinstance(x, int):
        raise AuditInputError(f"{what} must be an integer token id, got {x!r}")
    return int(x)


def _top(raw: Any, where: str) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(raw, Mapping):
        items = list(raw.items())
    elif isinstance(raw, list) and all(isinstance(x, list | tuple) and len(x) == 2 for x in raw):
        items = [(a, b) for a, b in raw]
    else:
        raise AuditInputError(
            f"{where}: `top_logprobs` must be an object {{token: logprob}} or a list of [token, logprob] pairs"
        )
    if not items:
        raise AuditInputError(f"{where}: `top_logprobs` is empty")
    if len(items) > MAX_VOCAB:
        raise AuditInputError(
            f"{where}: `top_logprobs` has {len(items)} entries, more than any vocabulary ({MAX_VOCAB})"
        )
    ids, lps = [], []
    for t, lp in items:
        # an int, or a key of ASCII digits: int() also took 1.5 and True (as token 1), an
        # Arabic-Indic digit one (U+0661) and 2**70 (then an internal OverflowError)
        digits = isinstance(t, str) and t.strip().isascii() and t.strip().isdigit()
        if not (digits or (isinstance(t, int) and not isinstance(t, bool))) or not 0 <= int(t) < MAX_VOCAB:
            raise AuditInputError(
                f"{where}: `top_logprobs` key {t!r} is not a token id (an int in [0, {MAX_VOCAB}))"
            )
        ids.append(int(t))
        lps.append(_number(lp, f"{where}: top logprob of token {t}"))
    a, b = np.asarray(ids, dtype=np.int64), np.asarray(lps, dtype=np.float64)
    if len(set(ids)) != len(ids) or a.min() < 0:
        raise AuditInputError(f"{where}: `top_logprobs` token ids must be distinct and >= 0")
    if not np.any(b > -math.inf):
        raise AuditInputError(
            f"{where}: `top_logprobs` gives no token a positive probability (all -inf); nothing was sampled from it"
        )
    if np.any(b > 1e-6) or np.exp(b).sum() > 1 + 1e-4:
        raise AuditInputError(
            f"{where}: `top_logprobs` must be logprobs of the raw distribution (each <= 0, summing to <= 1 as "
            f"probabilities; got a total of {np.exp(b).sum():.6g})"
        )
    return a, b


def audit_records(
    records: Iterable[Mapping[str, Any]], *, tol: float = DEFAULT_TOL, names: Sequence[str] | None = None
) -> LogprobAudit:
    """Audit records (dicts as in the JSONL file; see :func:`read_records` for the fields).

    ``names`` labels the records in error messages (default "record I"; the CLI passes "FILE line N").

    Raises:
        AuditInputError: a malformed record (named by its index), or no records.
    """
    out: list[RecordAudit] = []
    samplers: dict[str, Sampler] = {}  # a file usually repeats a few settings: build each sampler once
    for i, rec in enumerate(records):
        where = names[i] if names is not None and i < len(names) else f"record {i}"
        if not isinstance(rec, Mapping):
            raise AuditInputError(f"{where}: expected a JSON object, got {type(rec).__name__}")
        spec, hf = rec.get("sampler"), rec.get("settings")
        if spec is not None and hf is not None:
            raise AuditInputError(
                f"{where}: give `sampler` (a faithful spec) or `settings` (HF keys), not both"
            )
        try:
            key = json.dumps([spec, hf], sort_keys=True, default=str)
            if key not in samplers:
                samplers[key] = _resolve_sampler(spec if spec is not None else hf if hf is not None else "")
            s = samplers[key]
        except FaithfulError as exc:
            raise AuditInputError(
                f"{where}: sampler settings: {exc} (give `sampler` as a faithful spec or `settings` as HF keys)"
            ) from None
        token = _int(_field(rec, "token", where), f"{where}: `token`")
        reported = _number(_field(rec, "logprob", where), f"{where}: `logprob`")
        history = rec.get("history")
        if history is not None and not (
            isinstance(history, list)
            and all(isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in history)
        ):  # True was read as token 1
            raise AuditInputError(f"{where}: `history` must be a list of token ids (ints >= 0)")
        if ("logits" in rec) == ("top_logprobs" in rec):
            raise AuditInputError(
                f"{where}: give exactly one of `logits` (full vocabulary) or `top_logprobs`"
            )
        try:
            if "logits" in rec:
                row = rec["logits"]
                if not isinstance(row, list) or not row:
                    raise AuditInputError(f"{where}: `logits` must be a non-empty list of numbers")
                z = np.asarray([_number(x, f"{where}: logit") for x in row])[None, :]
                _check_history_ids(history, z.shape[1], "the logits' length", where)
                a = audit_logprobs(
                    z, [token], [reported], s, history=None if history is None else [history], tol=tol
                )
                r = a.records[0]
                out.append(_judge(i, rec.get("id"), token, reported, r.processed, r.raw, tol))
                continue
            ids, lps = _top(rec["top_logprobs"], where)
            vocab = rec.get("vocab_size")
            if vocab is not None and (_int(vocab, f"{where}: `vocab_size`") < len(ids) or ids.max() >= vocab):
                raise AuditInputError(f"{where}: `vocab_size` {vocab} is smaller than the token ids given")
            if vocab is not None and vocab > MAX_VOCAB:
                raise AuditInputError(
                    f"{where}: `vocab_size` {vocab} is larger than any vocabulary the audit takes ({MAX_VOCAB})"
                )
            room = vocab if vocab is not None else MAX_VOCAB  # 2**70 was judged "probability 0"
            if not 0 <= token < room:
                raise AuditInputError(
                    f"{where}: `token` must be in [0, {'vocab_size = ' if vocab is not None else ''}{room}), got {token}"
                )
            _check_history_ids(history, vocab, "`vocab_size`", where)
            if reported > 1e-9 or math.isnan(reported):
                raise AuditInputError(f"{where}: `logprob` must be <= 0, got {reported}")
            processed = _processed_from_top(s, ids, lps, token, vocab, history)
            hit = np.flatnonzero(ids == token)
            raw = float(lps[hit[0]]) if hit.size else None
            out.append(_judge(i, rec.get("id"), token, reported, processed, raw, tol))
        except AuditInputError as exc:
            msg = str(exc)
            raise AuditInputError(msg if msg.startswith(where) else f"{where}: {msg}") from None
        except FaithfulError as exc:
            raise AuditInputError(f"{where}: {exc}") from None
    if not out:
        raise AuditInputError("no records to audit; expected JSON objects, one per line")
    return LogprobAudit(tuple(out), tol)


def read_records(path: str | Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Read a JSONL file of audit records (blank lines skipped).

    Each line is one JSON object with:
        ``logits`` (list of numbers, ``-inf`` as ``-Infinity`` or ``"-inf"``) or ``top_logprobs``
        (``{token: logprob}`` or ``[[token, logprob], ...]``, the raw distribution's top-k; with an
        optional ``vocab_size``); ``sampler`` (a faithful spec) or ``settings`` (HF keys:
        temperature, top_k, top_p, min_p, typical_p, epsilon_cutoff, eta_cutoff, repetition_penalty,
        no_repeat_ngram_size, do_sample); ``token`` (the chosen id); ``logprob`` (what the engine
        reported); optional ``history`` (tokens so far, for penalties) and ``id``.

    Returns: the records and their names for error messages (``"FILE line N"``).

    Raises:
        AuditInputError: unreadable file or a line that is not a JSON object (named by line number).
    """
    out: list[dict[str, Any]] = []
    names: list[str] = []
    for name, rec in iter_records(path):
        out.append(rec)
        names.append(name)
    return out, names


def iter_records(path: str | Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """The records of a JSONL file one at a time, each with its name (``"FILE line N"``).

    The file is read a line at a time, so memory holds one record, whatever the file's size (reading
    it whole held about 7 times its size: a 50 MB file peaked at 370 MB). Lines are split on line
    breaks only (a U+2028 inside a JSON string is no line break). Fields as in :func:`read_records`.

    Raises:
        AuditInputError: as :func:`read_records`, when the bad line is reached.
    """
    p = Path(path)
    try:
        # stat before opening: a FIFO blocked the command forever and /dev/zero read until memory ran
        # out ("unexpected error (MemoryError)"); only a regular file holds records
        if not stat.S_ISREG(p.stat().st_mode):
            raise AuditInputError(
                f"{str(p)!r} is not a regular file (a folder, FIFO or device); expected a JSONL file of audit records"
            )
        f = p.open(encoding="utf-8", newline="")
    except OSError as exc:
        raise AuditInputError(
            f"cannot read {str(p)!r}: {exc}; expected a JSONL file of audit records"
        ) from None
    with f:
        n = 0
        while True:
            try:
                line = f.readline()
            except (OSError, UnicodeDecodeError) as exc:
                raise AuditInputError(
                    f"cannot read {str(p)!r} at line {n + 1}: {exc}; expected a UTF-8 JSONL file of audit records"
                ) from None
            if not line:
                return
            n += 1
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise AuditInputError(
                    f"{p}: line {n} is not valid JSON ({exc.msg}); one JSON object per line"
                ) from None
            except RecursionError:  # was "unexpected error (RecursionError)"
                raise AuditInputError(
                    f"{p}: line {n} nests arrays or objects too deeply to read; one flat JSON object per line"
                ) from None
            if not isinstance(rec, dict):
                raise AuditInputError(f"{p}: line {n} is a JSON {type(rec).__name__}, expected an object")
            yield f"{p} line {n}", rec


def audit_file(path: str | Path, *, tol: float = DEFAULT_TOL) -> LogprobAudit:
    """Audit a JSONL file of records (:func:`read_records`), reading one record at a time.

    Raises:
        AuditInputError: an unreadable file or a malformed record (named by its line).
    """
    names: list[str] = []

    def records() -> Iterator[dict[str, Any]]:
        for name, rec in iter_records(path):
            names.append(name)  # audit_records reads names[i] after record i is drawn
            yield rec

    return audit_records(records(), tol=tol, names=names)
