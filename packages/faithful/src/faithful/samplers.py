"""Token samplers: processors plus an exact draw, returning tokens and the q they came from.

:func:`make_sampler` builds a :class:`Sampler` from keyword processors (applied
in :data:`faithful.processors.DEFAULT_ORDER`) or from an explicit ordered list
of processors. Calling it on ``(B, V)`` logits returns a :class:`SampleResult`:
the tokens, ``log q[token]`` under the final distribution ``q``, and ``q``
itself on request. :meth:`Sampler.distribution` returns ``q`` without drawing.

Randomness is keyed (:mod:`faithful.rng`): the token of a row depends only on
``(seed, rows[i], step)`` and the row's logits, never on the batch around it.
Pass ``rows`` (global row ids) when a row is sampled in different batches, and
``step`` per decoding step; ``SampleResult.seed`` tells the seed used when
``rng=None``.

How a call runs:

- The common chain ``temperature -> top_k -> top_p -> min_p`` (any subset) with the
  inverse-CDF draw runs the kernels of :mod:`faithful.selection`: no full
  sort, no float64 copy of the logits when top-k or min-p bound the support.
  Everything else runs the dense float64 reference: :func:`faithful.processors.check_logits`,
  the processors in order, then the draw. Both give the same tokens, log-probabilities
  and q up to float64 rounding of a normaliser (tested token for token).
- ``draw="inverse_cdf"`` (default): the essay's bands over ``exp(z - max z)`` in token
  order, one uniform per row. ``draw="gumbel"``: Gumbel-max, one uniform per token.
  Neither can return a token of probability 0.
- ``temperature=0`` is the ``T -> 0`` limit: uniform over the maximal logits (so exact
  ties are broken at random); :func:`greedy` is plain argmax (first maximum), named
  for what it is: a prediction, not a sample.
- Mirostat keeps per-row state in the sampler (:class:`Mirostat`): see there.
- ``backend="torch"`` accepts torch tensors (CPU in place, CUDA copied to the host
  once) and returns the same numpy results as ``backend="numpy"``.

Example:
    >>> import numpy as np
    >>> s = make_sampler(temperature=0.8, top_p=0.9)
    >>> logits = np.log(np.array([[0.5, 0.3, 0.15, 0.05]]))
    >>> result = s(logits, rng=0, return_q=True)
    >>> result.tokens.shape, result.q.shape
    ((1,), (1, 4))
    >>> float(result.q[0, 3])
    0.0
    >>> greedy()(logits).tokens.tolist()
    [0]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from faithful.draw import DRAWS, band_search, gumbel_max
from faithful.errors import SamplingParameterError, ShapeMismatchError
from faithful.mirostat import Mirostat
from faithful.processors import (
    History,
    MinP,
    Processor,
    Temperature,
    TopK,
    TopP,
    apply_processors,
    check_logits,
)
from faithful.processors._base import _check_nonempty
from faithful.processors.table import KEYWORDS, TABLE, spec_help, spec_index
from faithful.rng import RngLike, resolve_rng
from faithful.selection import argmax_checked, sample_truncated
from faithful.tensors import BACKENDS, is_torch_tensor, to_numpy_logits

__all__ = [
    "Mirostat",
    "SampleResult",
    "Sampler",
    "greedy",
    "make_sampler",
    "parse_sampler_spec",
]


@dataclass(frozen=True)
class SampleResult:
    """What a sampler returns.

    Attributes:
        tokens: int64 ``(B,)``.
        logprobs: float64 ``(B,)``, natural log of ``q[token]`` under the final distribution.
        q: float64 ``(B, V)`` when ``return_q=True``, else None.
        seed: the seed of the keyed uniforms used (read it to reproduce a call made
            with ``rng=None``); None for greedy, which uses no randomness.
    """

    tokens: np.ndarray
    logprobs: np.ndarray
    q: np.ndarray | None = None
    seed: int | None = None


class _Uniforms(Protocol):
    def uniforms(self, rows: np.ndarray | Sequence[int], step: int, n: int = 1) -> np.ndarray: ...


def _uniform_source(rng: Any) -> tuple[_Uniforms, int | None]:
    """``rng`` as keyed uniforms and its seed: int / KeyedRNG / None, or any object with ``uniforms``."""
    source = resolve_rng(rng)
    seed = getattr(source, "seed", None)
    return source, seed if isinstance(seed, int) else None


def _check_rows(rows: Sequence[int] | np.ndarray | None, b: int) -> np.ndarray:
    if rows is None:
        return np.arange(b, dtype=np.int64)
    arr = np.asarray(rows)
    if arr.shape != (b,) or (arr.size and arr.dtype.kind not in "iu"):
        raise ShapeMismatchError(
            f"`rows` must be {b} int row ids (one per logits row), got shape {arr.shape}"
        )
    return arr.astype(np.int64)


class Sampler:
    """Processors plus a draw. Build with :func:`make_sampler`, :func:`greedy` or :func:`parse_sampler_spec`.

    Attributes:
        name: a spec-like description, e.g. ``"temperature:0.8+top-p:0.9"``.
        processors: the processors, in the order they are applied.
        draw: ``"inverse_cdf"`` or ``"gumbel"`` (``"argmax"`` for greedy).
        backend: ``"numpy"`` or ``"torch"``.
        mirostat: the :class:`Mirostat` state holder, or None.
    """

    def __init__(
        self,
        name: str,
        processors: Sequence[Processor],
        *,
        draw: str = "inverse_cdf",
        backend: str = "numpy",
        mirostat: Mirostat | None = None,
        fast: bool = True,
        kernels: str = "auto",
    ) -> None:
        self.name = name
        self.processors = tuple(processors)
        self.draw = draw
        self.backend = backend
        self.mirostat = mirostat
        self._fast = self._fast_plan() if fast else None
        self.kernels = _check_kernels(kernels)
        self._fused = self._fused_plan() if fast and kernels != "numpy" else None

    def _fused_plan(self) -> Any:
        """The compiled kernel's plan (:func:`faithful.kernels.fused_plan`), or None.

        None when numba is absent, ``kernels="numpy"``, or the chain is not one the kernel runs.
        """
        if self.draw != "inverse_cdf" or self.mirostat is not None or not _kernels_available():
            return None
        from faithful.kernels import fused_plan

        return fused_plan(self.processors)

    def _fast_plan(self) -> dict[str, Any] | None:
        """Parameters for :func:`~faithful.selection.sample_truncated` when it applies.

        It applies to ``temperature (> 0) -> top_k -> top_p -> min_p`` (any subset, in
        that order, none included) with the inverse-CDF draw and no mirostat.
        """
        if self.draw != "inverse_cdf" or self.mirostat is not None:
            return None
        order = (Temperature, TopK, TopP, MinP)
        plan: dict[str, Any] = {"temperature": 1.0}
        last = -1
        for proc in self.processors:
            kind = type(proc)
            if kind not in order or order.index(kind) <= last:
                return None
            last = order.index(kind)
            if isinstance(proc, Temperature):
                if proc.temperature == 0:
                    return None
                plan["temperature"] = float(proc.temperature)
            elif isinstance(proc, TopK):
                plan["top_k"] = int(proc.top_k)
            elif isinstance(proc, TopP):
                plan["top_p"] = float(proc.top_p)
            elif isinstance(proc, MinP):
                plan["min_p"] = float(proc.min_p)
        return plan

    def __repr__(self) -> str:
        return f"Sampler({self.name!r}, draw={self.draw!r}, backend={self.backend!r})"

    def reset(self) -> None:
        """Reset stateful parts (mirostat); a no-op for stateless samplers."""
        if self.mirostat is not None:
            self.mirostat.reset()

    @property
    def stochastic(self) -> bool:
        """True when a processor draws its own keyed randomness (XTC): q then depends on ``rng`` and ``step``."""
        return any(p.stochastic for p in self.processors)

    def _final_logits(
        self,
        logits: Any,
        history: History | None,
        rows: Sequence[int] | np.ndarray | None,
        rng: Any = None,
        step: int = 0,
    ) -> tuple[np.ndarray, np.ndarray]:
        z = check_logits(to_numpy_logits(logits, self.backend))
        b = z.shape[0]
        row_ids = _check_rows(rows, b)
        if history is not None and len(history) != b:
            raise ShapeMismatchError(f"`history` must have one sequence per row ({b}), got {len(history)}")
        if self.draw == "argmax":
            return z, row_ids
        # stochastic processors use the lanes after the draw's (inverse CDF: lane 0; Gumbel: 0..V-1)
        first_lane = z.shape[1] if self.draw == "gumbel" else 1
        z = apply_processors(
            z, self.processors, history, rng=rng, rows=row_ids, step=step, first_lane=first_lane
        )
        if self.mirostat is not None:
            z = self.mirostat.truncate(z, row_ids)
        _check_nonempty(z, f"the processors of {self.name!r}")
        return z, row_ids

    def distribution(
        self,
        logits: Any,
        *,
        history: History | None = None,
        rows: Sequence[int] | np.ndarray | None = None,
        rng: RngLike | _Uniforms = None,
        step: int = 0,
    ) -> np.ndarray:
        """The exact final distribution q that :meth:`__call__` draws from.

        Parameters:
            logits: ``(B, V)`` real array (torch tensor on the torch backend).
            history: per-row tokens so far (needed by penalties and no-repeat-ngram).
            rows: global row ids (mirostat state and XTC's keyed coin depend on them).
            rng, step: for a stochastic sampler (XTC), the same ``rng`` and ``step`` as the call
                whose q you want; required then.

        Returns:
            float64 ``(B, V)``, rows summing to 1, zero outside the kept set.

        Raises:
            InvalidLogitsError, EmptySupportError, ShapeMismatchError, SamplingParameterError.

        Example:
            >>> make_sampler(top_k=1).distribution(np.array([[0.0, 1.0]])).tolist()
            [[0.0, 1.0]]
        """
        if self.stochastic and rng is None:
            raise SamplingParameterError(
                f"{self.name!r} is stochastic (XTC): pass the `rng` and `step` of the draw whose q you want"
            )
        z, _ = self._final_logits(logits, history, rows, resolve_rng(rng) if rng is not None else None, step)
        if self.draw == "argmax":
            one_hot: np.ndarray = np.zeros_like(z)
            one_hot[np.arange(z.shape[0]), np.argmax(z, axis=1)] = 1.0
            return one_hot
        with np.errstate(over="ignore"):
            w = np.exp(z - z.max(axis=1, keepdims=True))
        if self.draw == "inverse_cdf":  # normalise exactly as the draw does
            q: np.ndarray = w / band_search(w, np.full(w.shape[0], 0.5))[1][:, None]
        else:
            q = w / w.sum(axis=1, keepdims=True)
        return q

    def __call__(
        self,
        logits: Any,
        *,
        rng: RngLike = None,
        step: int = 0,
        rows: Sequence[int] | np.ndarray | None = None,
        history: History | None = None,
        return_q: bool = False,
    ) -> SampleResult:
        """Draw one token per row.

        Parameters:
            logits: ``(B, V)`` real array; a torch tensor (CPU or CUDA) on the torch backend.
            rng: int seed, :class:`~faithful.rng.KeyedRNG`, or None (fresh seed); any object
                with the same ``uniforms(rows, step, n)`` method is used as is.
            step: decoding step, part of the key of the uniforms.
            rows: global row ids ``(B,)`` for keying (default ``arange(B)``).
            history: per-row tokens generated so far (for penalties / no-repeat-ngram).
            return_q: also return the final distribution ``q`` ``(B, V)``.

        Returns:
            :class:`SampleResult` (tokens int64 ``(B,)``, logprobs float64 ``(B,)``, q or None).

        Raises:
            InvalidLogitsError: NaN/+inf logits or wrong shape.
            EmptySupportError: a row has nothing left to sample.
            ShapeMismatchError: ``rows`` / ``history`` disagree with the batch.

        Example:
            >>> r = make_sampler()(np.zeros((2, 5)), rng=1, step=0)
            >>> r.tokens.dtype.name, r.logprobs.round(4).tolist()
            ('int64', [-1.6094, -1.6094])
        """
        if self.draw == "argmax" and not return_q:
            x = np.asarray(to_numpy_logits(logits, self.backend) if is_torch_tensor(logits) else logits)
            if x.dtype.kind == "f" and x.ndim == 2 and x.shape[1] > 0:
                _check_rows(rows, x.shape[0])
                return SampleResult(argmax_checked(x), np.zeros(x.shape[0]), None)
        source: Any = rng
        if self._fused is not None:
            x = np.asarray(to_numpy_logits(logits, self.backend) if is_torch_tensor(logits) else logits)
            if x.dtype.kind == "f" and x.ndim == 2 and x.shape[0] > 0 and x.shape[1] > 0:
                row_ids = _check_rows(rows, x.shape[0])
                if history is not None and len(history) != x.shape[0]:
                    raise ShapeMismatchError(
                        f"`history` must have one sequence per row ({x.shape[0]}), got {len(history)}"
                    )
                from faithful.kernels import sample_fused

                keyed, seed = _uniform_source(rng)
                u = keyed.uniforms(row_ids, step, 1)[:, 0]
                return SampleResult(*sample_fused(x, u, self._fused, return_q=return_q), seed=seed)
        if self._fast is not None:
            x = np.asarray(to_numpy_logits(logits, self.backend) if is_torch_tensor(logits) else logits)
            if x.dtype.kind == "f" and x.ndim == 2 and x.shape[0] > 0 and x.shape[1] > 0:
                row_ids = _check_rows(rows, x.shape[0])
                if history is not None and len(history) != x.shape[0]:
                    raise ShapeMismatchError(
                        f"`history` must have one sequence per row ({x.shape[0]}), got {len(history)}"
                    )
                keyed, seed = _uniform_source(rng)
                u = keyed.uniforms(row_ids, step, 1)[:, 0]
                with np.errstate(over="ignore"):  # z / T -> -inf for hugely negative z: probability 0
                    fast = sample_truncated(x, u, return_q=return_q, **self._fast)
                if fast is not None:
                    return SampleResult(*fast, seed=seed)
                source = keyed  # the reference path below draws with the same uniforms
        with np.errstate(over="ignore"):  # exp(-huge) -> 0 is the right limit
            return self._sample_reference(logits, source, step, rows, history, return_q)

    def _sample_reference(
        self,
        logits: Any,
        rng: Any,
        step: int,
        rows: Sequence[int] | np.ndarray | None,
        history: History | None,
        return_q: bool,
    ) -> SampleResult:
        keyed, seed = _uniform_source(rng)
        z, row_ids = self._final_logits(logits, history, rows, keyed, step)
        b = z.shape[0]
        r = np.arange(b)
        if self.draw == "argmax":
            tokens = np.argmax(z, axis=1).astype(np.int64)
            q = None
            if return_q:
                q = np.zeros_like(z)
                q[r, tokens] = 1.0
            return SampleResult(tokens, np.zeros(b), q)
        m = z.max(axis=1, keepdims=True)
        w = np.exp(z - m)
        if self.draw == "gumbel":
            u = keyed.uniforms(row_ids, step, z.shape[1])
            tokens = gumbel_max(z, u)
            total = w.sum(axis=1)
        else:
            u1 = keyed.uniforms(row_ids, step, 1)[:, 0]
            tokens, total = band_search(w, u1)
        logprobs = z[r, tokens] - m[:, 0] - np.log(total)
        if self.mirostat is not None:
            self.mirostat.update(row_ids, logprobs)
        return SampleResult(tokens, logprobs, w / total[:, None] if return_q else None, seed=seed)


KERNELS = ("auto", "numba", "numpy")


def _kernels_available() -> bool:
    # find_spec, not an import: the reference path never imports numba or faithful.kernels' compiled parts
    from faithful.kernels import available

    return available()


def _check_kernels(kernels: str) -> str:
    if kernels not in KERNELS:
        raise SamplingParameterError(f"`kernels` must be one of {list(KERNELS)}, got {kernels!r}")
    if kernels == "numba" and not _kernels_available():
        raise SamplingParameterError(
            "`kernels='numba'` needs numba; install it with `pip install faithful[fast]`, or use kernels='auto'"
        )
    return kernels


def make_sampler(
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    min_p: float | None = None,
    typical_p: float | None = None,
    epsilon: float | None = None,
    eta: float | None = None,
    top_n_sigma: float | None = None,
    repetition_penalty: float | None = None,
    presence_penalty: float | None = None,
    frequency_penalty: float | None = None,
    dry_multiplier: float | None = None,
    dry_base: float | None = None,
    dry_allowed_length: int | None = None,
    dry_penalty_last_n: int | None = None,
    dry_sequence_breakers: Sequence[Sequence[int]] | None = None,
    no_repeat_ngram_size: int | None = None,
    logit_bias: Mapping[int, float] | None = None,
    allowed_tokens: Sequence[int] | None = None,
    forbidden_tokens: Sequence[int] | None = None,
    xtc_probability: float | None = None,
    xtc_threshold: float | None = None,
    xtc_min_keep: int | None = None,
    mirostat: int | Mirostat | None = None,
    mirostat_tau: float | None = None,
    mirostat_eta: float | None = None,
    processors: Sequence[Processor] | None = None,
    draw: str = "inverse_cdf",
    backend: str = "numpy",
    fast: bool = True,
    kernels: str = "auto",
) -> Sampler:
    """Build a sampler: processors (default order, or ``processors`` in your order) plus a draw.

    The processor keywords, their checks and defaults and the order they are applied
    in come from the processor table (:mod:`faithful.processors.table`, listed in
    :mod:`faithful.processors`); a keyword left None is off.

    Parameters:
        temperature: ``>= 0``; 0 is the ``T -> 0`` limit (uniform over maximal logits).
        top_k: int ``>= 1``. top_p: in (0, 1]. min_p: in [0, 1]. typical_p: in (0, 1].
        epsilon, eta: in (0, 1). top_n_sigma: ``>= 0``.
        repetition_penalty: ``> 0``. presence_penalty, frequency_penalty: finite.
        dry_multiplier, dry_base (1.75), dry_allowed_length (2), dry_penalty_last_n (-1: all),
            dry_sequence_breakers (token sequences): llama.cpp's DRY (:class:`~faithful.processors.DRY`);
            the others need ``dry_multiplier``.
        no_repeat_ngram_size: int ``>= 1``. logit_bias: ``{token: bias}``.
        allowed_tokens, forbidden_tokens: token ids.
        xtc_probability, xtc_threshold (0.1), xtc_min_keep (1): llama.cpp's XTC
            (:class:`~faithful.processors.XTC`), stochastic: it uses the call's ``rng``.
        mirostat: 1 or 2 (or a :class:`Mirostat`), applied after every other processor;
            ``mirostat_tau`` (5.0) / ``mirostat_eta`` (0.1) configure it. The sampler then holds
            per-row state: see :class:`Mirostat`.
        processors: an explicit ordered list of processors, applied exactly in that
            order; cannot be combined with the keyword processors above.
        draw: ``"inverse_cdf"`` (one uniform per row) or ``"gumbel"`` (one per token).
        backend: ``"numpy"`` (reference) or ``"torch"`` (accepts torch tensors; same tokens).
        fast: use the candidate kernels of :mod:`faithful.selection` for the chain
            ``temperature -> top_k -> top_p -> min_p`` (same results up to float64 rounding of a
            normaliser); False forces the dense reference path.
        kernels: which fast path: ``"auto"`` (the compiled kernels of :mod:`faithful.kernels` when
            numba is installed, else numpy), ``"numba"`` (compiled; an error without numba) or
            ``"numpy"`` (the numpy candidate kernels). Ignored when ``fast=False``.

    Returns:
        A :class:`Sampler`.

    Raises:
        SamplingParameterError: an out-of-range parameter, unknown draw/backend, a
            secondary keyword without its processor's main one (``dry_base`` without
            ``dry_multiplier``), or both ``processors`` and keyword processors given.

    Example:
        >>> make_sampler(temperature=0.7, top_k=40).name
        'temperature:0.7+top-k:40'
    """
    given = {k: v for k, v in locals().items() if k in KEYWORDS and v is not None}
    if draw not in DRAWS:
        raise SamplingParameterError(f"`draw` must be one of {list(DRAWS)}, got {draw!r}")
    if backend not in BACKENDS:
        raise SamplingParameterError(f"`backend` must be one of {list(BACKENDS)}, got {backend!r}")
    procs: list[Processor] = []
    parts: list[str] = []
    miro: Mirostat | None = None
    for entry in TABLE:
        mine = {p.keyword: given[p.keyword] for p in entry.params if p.keyword in given}
        if not any(p.primary and p.keyword in mine for p in entry.params):
            if mine:
                main = " or ".join(f"`{p.keyword}`" for p in entry.params if p.primary)
                raise SamplingParameterError(
                    f"{', '.join(f'`{k}`' for k in mine)} configure {entry.name}, which is off: give {main} too"
                )
            continue
        # checked before the identity test, so temperature=True cannot pass as 1.0
        checks = {p.keyword: p.check for p in entry.params}
        mine = {k: v if isinstance(v, Mirostat) else checks[k](k, v) for k, v in mine.items()}
        if entry.identity is not None and entry.identity(mine):
            continue
        if entry.cls is Mirostat:
            if isinstance(mine["mirostat"], Mirostat):
                if len(mine) > 1:
                    raise SamplingParameterError(
                        "give either a Mirostat object or `mirostat_tau`/`mirostat_eta`"
                    )
                miro = mine["mirostat"]
            else:
                miro = entry.build(mine)
            # named from the object, so the name parses back to it (tau always, eta when not the default)
            state = {"mirostat": miro.version, "mirostat_tau": miro.tau}
            if miro.eta != Mirostat.eta:
                state["mirostat_eta"] = miro.eta
            parts.append(entry.label(state))
            continue
        procs.append(entry.build(mine))
        parts.append(entry.label(mine))
    if processors is not None:
        if procs:
            raise SamplingParameterError(
                "give either keyword processors (e.g. top_p=0.9) or an explicit ordered `processors` list, not both"
            )
        procs = list(processors)
        for p in procs:
            if not isinstance(p, Processor):
                raise SamplingParameterError(f"`processors` must hold faithful.processors objects, got {p!r}")
        parts = [type(p).__name__ for p in procs] + parts
    if draw == "gumbel":
        parts.append("gumbel")
    return Sampler(
        "+".join(parts) or "sample",
        procs,
        draw=draw,
        backend=backend,
        mirostat=miro,
        fast=fast,
        kernels=kernels,
    )


def greedy(*, backend: str = "numpy") -> Sampler:
    """Argmax decoding, named for what it is: a prediction, not a sample.

    Returns the first maximal token per row; ``q`` is the one-hot on it and
    ``logprobs`` are 0. Ignores ``rng``.

    Example:
        >>> greedy()(np.array([[0.2, 0.9, 0.1]]), return_q=True).q.tolist()
        [[0.0, 1.0, 0.0]]
    """
    if backend not in BACKENDS:
        raise SamplingParameterError(f"`backend` must be one of {list(BACKENDS)}, got {backend!r}")
    return Sampler("greedy", (), draw="argmax", backend=backend)


def parse_sampler_spec(spec: str, *, backend: str = "numpy") -> Sampler:
    """Build a sampler from a short spec string, parts joined by ``+``.

    Valid parts: ``greedy`` (alone), ``sample``, ``gumbel`` (Gumbel-max draw), and
    ``key:VALUE`` for every parameter of the processor table
    (:func:`faithful.processors.table.spec_help` lists them): ``temperature:T``,
    ``top-k:K``, ``top-p:P``, ``min-p:P``, ``typical:P``, ``epsilon:E``, ``eta:E``,
    ``top-n-sigma:N``, ``repetition-penalty:R``, ``presence:X``, ``frequency:X``,
    ``dry:M`` (with ``dry-base:B``, ``dry-allowed-length:N``, ``dry-last-n:N``,
    ``dry-breakers:13,25/7``), ``no-repeat-ngram:N``, ``logit-bias:5=-1.5,7=-inf``,
    ``allowed-tokens:1,2,3``, ``forbidden-tokens:4,5``, ``xtc:P`` (with
    ``xtc-threshold:T``, ``xtc-min-keep:N``), ``mirostat:TAU`` (v2), ``mirostat-v1:TAU``,
    ``mirostat-eta:E``. Each part may appear once.

    Raises:
        SamplingParameterError: unknown or repeated part, or a bad value (the message
            names the part and lists the valid parts).

    Example:
        >>> parse_sampler_spec("temperature:0.8+top-p:0.9").name
        'temperature:0.8+top-p:0.9'
    """
    if not isinstance(spec, str) or not spec.strip():
        raise SamplingParameterError(f"sampler spec must be a non-empty string; valid parts: {spec_help()}")
    parts = [p.strip().lower() for p in spec.split("+")]
    if parts == ["greedy"]:
        return greedy(backend=backend)
    index = spec_index()
    kwargs: dict[str, Any] = {}
    set_by: dict[str, str] = {}  # keyword -> the part that set it

    def put(keyword: str, value: Any, part: str) -> None:
        if keyword in set_by:
            raise SamplingParameterError(
                f"sampler spec {spec!r} sets `{keyword}` twice ({set_by[keyword]!r} and {part!r}); "
                "give each part once"
            )
        set_by[keyword] = part
        kwargs[keyword] = value

    for part in parts:
        if part in ("sample", "gumbel"):
            put("draw", "gumbel" if part == "gumbel" else "inverse_cdf", part)
            continue
        if part == "" and len(parts) > 1:
            raise SamplingParameterError(f"sampler spec {spec!r} has an empty part (two '+' in a row?)")
        key, sep, raw = part.partition(":")
        if key not in index or not sep:
            hint = " (greedy cannot be combined)" if key == "greedy" else ""
            raise SamplingParameterError(
                f"unknown sampler spec part {part!r}{hint}; valid parts: {spec_help()}"
            )
        _, param, spec_key = index[key]
        try:
            value = param.parse(raw)
        except ValueError:
            raise SamplingParameterError(
                f"sampler spec part {part!r}: {raw!r} is not a valid value for `{param.keyword}` "
                f"(expected {param.expected})"
            ) from None
        put(param.keyword, value, part)
        for keyword, implied in spec_key.implies.items():
            put(keyword, implied, part)
    return make_sampler(backend=backend, **kwargs)
