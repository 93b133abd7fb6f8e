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
- ``backend="torch"`` given a torch tensor (CPU or CUDA) runs every processor and the draw
  with torch ops on the tensor's own device (:mod:`faithful.torch_backend`) and returns
  tensors there: the same tokens and kept sets as ``backend="numpy"``, ``log q`` and ``q``
  to 1e-12. Numpy input takes the numpy path on either backend.

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
from typing import Any

import numpy as np  # noqa: F401  (the docstring examples here and of Sampler use `np`)

from faithful.draw import DRAWS
from faithful.errors import SamplingParameterError
from faithful.mirostat import Mirostat
from faithful.processors import Processor
from faithful.processors.table import KEYWORDS, TABLE, spec_help, spec_index
from faithful.sampler_core import KERNELS as KERNELS
from faithful.sampler_core import Sampler, SampleResult
from faithful.tensors import BACKENDS

__all__ = [
    "Mirostat",
    "SampleResult",
    "Sampler",
    "greedy",
    "make_sampler",
    "parse_sampler_spec",
]

# Sampler lives in faithful.sampler_core; its docstring examples still run with this module's
# (doctest.testmod(faithful.samplers) finds them here, with make_sampler and np in scope).
__test__ = {
    "Sampler.distribution": Sampler.distribution,
    "Sampler.__call__": Sampler.__call__,
}


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
        backend: ``"numpy"`` (reference) or ``"torch"`` (a torch tensor is sampled on its own
            device by :mod:`faithful.torch_backend`; same tokens, results as tensors).
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
