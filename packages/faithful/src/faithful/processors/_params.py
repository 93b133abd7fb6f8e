"""The schema of the processor table: parameter checks, spec value syntax, :class:`Param` and :class:`Entry`.

The table itself (one :class:`Entry` per processor) is :mod:`faithful.processors.table`.
Every check takes ``(keyword, value)``, returns the normalised value and raises
:class:`~faithful.errors.SamplingParameterError` in the house style:
"`top_p` must be in (0, 1], got 1.5"; its ``expected`` attribute is the phrase the
docs and the CLI's help show.

Example:
    >>> real_in(0, 1, lo_open=True)("top_p", 0.9)
    0.9
    >>> real_in(0, 1, lo_open=True)("top_p", 1.5)
    Traceback (most recent call last):
    ...
    faithful.errors.SamplingParameterError: `top_p` must be in (0, 1], got 1.5
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from faithful.errors import SamplingParameterError
from faithful.processors._base import _param_error, _real

Check = Callable[[str, Any], Any]

# Counts and token ids travel as int64 (numpy, torch, the numba kernels): a larger Python int
# overflowed there (top_k = 2**63 - 1 drew the least likely token every time), so it is refused here.
INT64_MAX = 2**63 - 1


# ---------------------------------------------------------------- checks: (keyword, value) -> normalised value


def real_in(lo: float, hi: float, *, lo_open: bool = False, hi_open: bool = False) -> Check:
    """A real number in an interval: "`top_p` must be in (0, 1], got 1.5"."""
    interval = f"{'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"

    def check(name: str, value: Any) -> float:
        v = _real(name, value)
        ok = (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
        if not ok or math.isnan(v):
            raise _param_error(name, f"in {interval}", value)
        return v

    check.expected = f"in {interval}"  # type: ignore[attr-defined]
    return check


def finite(lo: float | None = None, *, lo_open: bool = False, note: str = "") -> Check:
    """A finite real number, optionally bounded below: "`temperature` must be a finite number >= 0"."""
    bound = "" if lo is None else f" {'>' if lo_open else '>='} {lo:g}"
    expected = f"a finite number{bound}{note}"

    def check(name: str, value: Any) -> float:
        v = _real(name, value)
        ok = math.isfinite(v) and (lo is None or (v > lo if lo_open else v >= lo))
        if not ok:
            raise _param_error(name, expected, value)
        return v

    check.expected = expected  # type: ignore[attr-defined]
    return check


def integer(lo: int, *, note: str = "") -> Check:
    """An int at least ``lo``: "`top_k` must be an int >= 1, got 0"."""
    expected = f"an int >= {lo}{note}"

    def check(name: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < lo:
            raise _param_error(name, expected, value)
        if int(value) > INT64_MAX:
            raise _param_error(name, f"{expected} and <= 2**63 - 1", value)
        return int(value)

    check.expected = expected  # type: ignore[attr-defined]
    return check


def one_of(*choices: int) -> Check:
    expected = " or ".join(str(c) for c in choices)

    def check(name: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or int(value) not in choices:
            raise _param_error(name, expected, value)
        return int(value)

    check.expected = expected  # type: ignore[attr-defined]
    return check


def token_ids(name: str, value: Any) -> tuple[int, ...]:
    """A 1-D sequence of int token ids (range against the vocabulary is checked on use)."""
    ids = np.asarray(value)
    if ids.ndim != 1 or (ids.size and ids.dtype.kind not in "iu"):
        raise _param_error(name, "a 1-D sequence of int token ids", value)
    out = tuple(int(t) for t in ids)
    if any(abs(t) > INT64_MAX for t in out):
        raise _param_error(name, "token ids of at most 2**63 - 1", value)
    return out


token_ids.expected = "token ids"  # type: ignore[attr-defined]


def bias_map(name: str, value: Any) -> dict[int, float]:
    if not isinstance(value, Mapping):
        raise _param_error(name, "a mapping {token_id: bias}", value)
    out: dict[int, float] = {}
    for token, bias in value.items():
        if isinstance(token, bool) or not isinstance(token, int | np.integer) or abs(int(token)) > INT64_MAX:
            raise _param_error(name, "keyed by int token ids of at most 2**63 - 1", token)
        b = _real(name, bias)
        if math.isnan(b) or b == math.inf:
            raise _param_error(name, "finite or -inf biases", bias)
        out[int(token)] = b
    return out


bias_map.expected = "{token: bias}, biases finite or -inf"  # type: ignore[attr-defined]


def breaker_list(name: str, value: Any) -> tuple[tuple[int, ...], ...]:
    if isinstance(value, str | bytes) or not isinstance(value, Sequence | np.ndarray):
        raise _param_error(name, "a sequence of token-id sequences, e.g. [[13], [25, 7]]", value)
    out = []
    for b in value:
        ids = token_ids(name, b) if not isinstance(b, int | np.integer) else (int(b),)
        if not ids or min(ids) < 0:
            raise _param_error(name, "non-empty sequences of token ids >= 0", b)
        out.append(ids)
    return tuple(out)


breaker_list.expected = "token-id sequences"  # type: ignore[attr-defined]


# ---------------------------------------------------------------- spec values: parse and format


def _fmt_num(x: Any) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


def parse_ids(raw: str) -> tuple[int, ...]:
    return tuple(int(t) for t in raw.split(",") if t != "")


def fmt_ids(ids: Any) -> str:
    return ",".join(str(int(t)) for t in ids)


def parse_bias(raw: str) -> dict[int, float]:
    out: dict[int, float] = {}
    for item in raw.split(","):
        token, sep, bias = item.partition("=")
        if not sep:
            raise ValueError(item)
        out[int(token)] = float(bias)
    return out


def fmt_bias(bias: Mapping[int, float]) -> str:
    return ",".join(f"{t}={b:g}" for t, b in bias.items())


def parse_breakers(raw: str) -> tuple[tuple[int, ...], ...]:
    return tuple(tuple(int(t) for t in b.split("/")) for b in raw.split(",") if b != "")


def fmt_breakers(breakers: Sequence[Sequence[int]]) -> str:
    return ",".join("/".join(str(int(t)) for t in b) for b in breakers)


# ---------------------------------------------------------------- the table


@dataclass(frozen=True)
class SpecKey:
    """A spec part ``key:VALUE`` that sets a parameter (and, through ``implies``, others)."""

    key: str
    implies: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Param:
    """One parameter of a processor.

    Attributes:
        keyword: the :func:`~faithful.samplers.make_sampler` keyword, also the name in messages.
        field: the processor's dataclass field.
        check: ``(keyword, value) -> normalised value``; raises :class:`SamplingParameterError`.
        default: the value when the processor is on but this keyword is not given
            (None: required).
        spec: the spec parts that set it (empty: not expressible in a spec).
        parse, fmt: a spec value to the parameter and back.
        primary: giving it turns the processor on; a non-primary parameter alone is an error.
        doc: what it means, for the docs.
    """

    keyword: str
    field: str
    check: Check
    doc: str
    default: Any = None
    spec: tuple[SpecKey, ...] = ()
    parse: Callable[[str], Any] = float
    fmt: Callable[[Any], str] = _fmt_num
    primary: bool = True

    @property
    def expected(self) -> str:
        return str(getattr(self.check, "expected", ""))


@dataclass(frozen=True)
class Entry:
    """One processor: name, class, parameters, Hugging Face equivalent, an example and a summary."""

    name: str
    cls: type
    params: tuple[Param, ...]
    summary: str
    example: Mapping[str, Any]
    hf: str | None = None
    hf_args: Callable[[Mapping[str, Any]], dict[str, Any]] | None = None
    identity: Callable[[Mapping[str, Any]], bool] | None = None

    def build(self, given: Mapping[str, Any]) -> Any:
        """The processor for the given keywords (defaults filled in); validated by its class."""
        kwargs = {}
        for p in self.params:
            value = given.get(p.keyword, p.default)
            if value is None:
                raise SamplingParameterError(f"`{p.keyword}` is required for {self.name}")
            kwargs[p.field] = value
        return self.cls(**kwargs)

    def label(self, given: Mapping[str, Any]) -> str:
        """The spec of the given keywords, e.g. ``"top-p:0.9"`` (parses back to the same processor)."""
        parts = []
        for p in self.params:
            if p.keyword in given and p.spec:
                key = p.spec[0]
                for k in p.spec:  # the key whose implications hold, e.g. mirostat-v1 for version 1
                    if all(given.get(kw) == v for kw, v in k.implies.items()):
                        key = k
                        break
                parts.append(f"{key.key}:{p.fmt(given[p.keyword])}")
        return "+".join(parts) or self.name
