"""Pure logits processors: ``(logits, history) -> logits``, never mutating their input.

Every processor takes float64 logits of shape ``(B, V)`` and the per-row token
history (a sequence of B token sequences, or None) and returns a *new*
``(B, V)`` float64 array in which removed tokens are ``-inf``. Truncation
processors always keep the most likely token, so they never empty a row; hard
masks (allowed/forbidden tokens, no-repeat-ngram) raise
:class:`~faithful.errors.EmptySupportError` if they would.

Default order (:data:`DEFAULT_ORDER`), used by
:func:`faithful.samplers.make_sampler` when processors are given as keywords;
penalties act on the model's raw logits (as in Hugging Face, where processors
run before warpers), masks next, then temperature, then truncations in Hugging
Face's warper order:

1. ``repetition_penalty``  2. ``presence/frequency penalty``  3. ``logit_bias``
4. ``no_repeat_ngram``  5. ``allowed_tokens``  6. ``forbidden_tokens``
7. ``temperature``  8. ``top_n_sigma``  9. ``top_k``  10. ``top_p``  11. ``min_p``
12. ``typical_p``  13. ``epsilon``  14. ``eta``

Semantics match Hugging Face's processors of the same name except where noted:

- ``TopP`` keeps *every* token tied with the boundary token (the kept set is the
  smallest set ``{p >= tau}`` with mass ``>= top_p``); Hugging Face breaks such
  ties by sort order, so which of two equal tokens survives is arbitrary there.
- ``Temperature(0)`` is the limit ``T -> 0``: the uniform distribution over the
  maximal logits (Hugging Face rejects 0).
- ``MinP`` compares in log space: keep ``z >= max z + log(min_p)``.

Example:
    >>> z = np.log(np.array([[0.5, 0.3, 0.2]]))
    >>> np.isfinite(TopP(0.75)(z)).tolist()
    [[True, True, False]]
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from faithful.backends.numpy_fast import (
    candidate_superset,
    check_row_max,
    mass_threshold_ascending,
    top_p_threshold,
)
from faithful.errors import EmptySupportError, InvalidLogitsError, SamplingParameterError, ShapeMismatchError

__all__ = [
    "DEFAULT_ORDER",
    "AllowedTokens",
    "Epsilon",
    "Eta",
    "ForbiddenTokens",
    "History",
    "LogitBias",
    "MinP",
    "NoRepeatNGram",
    "OccurrencePenalty",
    "Processor",
    "RepetitionPenalty",
    "Temperature",
    "TopK",
    "TopNSigma",
    "TopP",
    "Typical",
    "apply_processors",
    "check_logits",
    "log_softmax",
    "softmax",
    "top_p_threshold",
]

History = Sequence[Sequence[int]]

DEFAULT_ORDER = (
    "repetition_penalty",
    "occurrence_penalty",
    "logit_bias",
    "no_repeat_ngram",
    "allowed_tokens",
    "forbidden_tokens",
    "temperature",
    "top_n_sigma",
    "top_k",
    "top_p",
    "min_p",
    "typical_p",
    "epsilon",
    "eta",
)


# ---------------------------------------------------------------- validation


def _param_error(name: str, expected: str, got: object) -> SamplingParameterError:
    return SamplingParameterError(f"`{name}` must be {expected}, got {got!r}")


def _real(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise _param_error(name, "a real number", value)
    return float(value)


def _in_range(name: str, value: object, lo: float, hi: float, *, lo_open: bool, hi_open: bool) -> float:
    v = _real(name, value)
    ok = (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
    if not ok or math.isnan(v):
        interval = f"{'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
        raise _param_error(name, f"in {interval}", value)
    return v


def check_logits(logits: object) -> np.ndarray:
    """Validate logits and return them as float64 ``(B, V)`` (a copy when the dtype changes).

    Parameters:
        logits: array-like of real numbers, shape ``(B, V)`` with ``V >= 1``.

    Returns:
        float64 array; the caller's array is never written to.

    Raises:
        InvalidLogitsError: not 2-D real numbers, or NaN / ``+inf`` present.
        EmptySupportError: a row is entirely ``-inf``.

    Example:
        >>> check_logits([[0.0, -np.inf]]).dtype.name
        'float64'
    """
    arr = np.asarray(logits)
    if arr.dtype.kind not in "fiu":
        raise InvalidLogitsError(f"logits must be real numbers, got dtype {arr.dtype}")
    if arr.ndim != 2 or arr.shape[1] < 1:
        hint = "; for one row use logits[None, :]" if arr.ndim == 1 else ""
        raise InvalidLogitsError(f"logits must have shape (batch, vocab) with vocab >= 1, got {arr.shape}{hint}")
    z = arr.astype(np.float64, copy=False)
    if z.size == 0:
        return z
    check_row_max(z.max(axis=1))  # NaN and +inf propagate into the max: one pass checks all
    return z


def _check_nonempty(z: np.ndarray, what: str) -> None:
    if not z.size:
        return
    top = z.max(axis=1)  # NaN and +inf propagate into the max, so one reduction checks all three
    if (bad := np.isnan(top) | (top == np.inf)).any():
        rows = np.flatnonzero(bad)[:10].tolist()
        raise InvalidLogitsError(
            f"rows {rows} hold NaN or +inf after {what} (an overflow, e.g. a huge logit_bias); "
            "keep logits and biases within float64 range"
        )
    if (empty := top == -np.inf).any():
        rows = np.flatnonzero(empty)[:10].tolist()
        raise EmptySupportError(
            f"rows {rows} have no token left after {what}; relax the mask or constraint for those rows"
        )


def _history_matrix(history: History | None, shape: tuple[int, int], name: str) -> tuple[np.ndarray, np.ndarray]:
    """Flatten history into (row index, token) arrays, validating ids."""
    b, v = shape
    if history is None:
        raise SamplingParameterError(f"`{name}` needs `history` (the tokens generated so far per row)")
    if len(history) != b:
        raise ShapeMismatchError(f"`history` must have one sequence per row ({b}), got {len(history)}")
    lengths = [len(h) for h in history]
    rows = np.repeat(np.arange(b), lengths)
    tokens = np.fromiter((int(t) for h in history for t in h), dtype=np.int64, count=sum(lengths))
    if tokens.size and (tokens.min() < 0 or tokens.max() >= v):
        raise ShapeMismatchError(f"`history` holds token ids outside [0, {v}); ids must index the vocabulary")
    return rows, tokens


def _token_ids(name: str, tokens: Sequence[int] | np.ndarray) -> np.ndarray:
    ids = np.asarray(tokens)
    if ids.ndim != 1 or (ids.size and ids.dtype.kind not in "iu"):
        raise _param_error(name, "a 1-D sequence of int token ids", tokens)
    return ids.astype(np.int64)


def _check_ids_in_vocab(name: str, ids: np.ndarray, v: int) -> None:
    if ids.size and (ids.min() < 0 or ids.max() >= v):
        raise ShapeMismatchError(f"`{name}` holds token ids outside [0, {v}) for a vocabulary of {v}")


# ---------------------------------------------------------------- softmax


def log_softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax in float64; ``-inf`` stays ``-inf``. ``z``: ``(B, V)``, no empty rows."""
    m = z.max(axis=1, keepdims=True)
    s = z - m
    return s - np.log(np.exp(s).sum(axis=1, keepdims=True))


def softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64 (exactly 0 for ``-inf``). ``z``: ``(B, V)``, no empty rows."""
    w = np.exp(z - z.max(axis=1, keepdims=True))
    return w / w.sum(axis=1, keepdims=True)


def _entropy(logp: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Row entropy in nats, ``(B, 1)``; removed tokens (``p = 0``) contribute 0."""
    return -(p * np.where(p > 0, logp, 0.0)).sum(axis=1, keepdims=True)


def _keep(z: np.ndarray, keep: np.ndarray) -> np.ndarray:
    return np.where(keep, z, -np.inf)


# ---------------------------------------------------------------- processors


class Processor:
    """Base of all processors: ``processor(logits, history) -> new logits``.

    Subclasses are frozen dataclasses; ``name`` is the keyword of
    :func:`faithful.samplers.make_sampler` that builds them.
    """

    name: ClassVar[str] = "processor"
    needs_history: ClassVar[bool] = False

    def __call__(self, logits: np.ndarray, history: History | None = None) -> np.ndarray:
        raise NotImplementedError


@dataclass(frozen=True)
class Temperature(Processor):
    """Divide logits by ``temperature`` (> 0); ``0`` gives uniform over the maximal logits.

    When ``z / T`` would overflow float64, the row max is subtracted first
    (``(z - max z) / T``: the same distribution, finite logits).

    Example:
        >>> Temperature(0.5)(np.array([[1.0, 2.0]])).tolist()
        [[2.0, 4.0]]
    """

    temperature: float
    name: ClassVar[str] = "temperature"

    def __post_init__(self) -> None:
        t = _real("temperature", self.temperature)
        if not (t >= 0 and math.isfinite(t)):
            raise _param_error("temperature", "a finite number >= 0 (0 means argmax)", self.temperature)

    def __call__(self, logits: np.ndarray, history: History | None = None) -> np.ndarray:
        top = logits.max(axis=1, keepdims=True)
        if self.temperature == 0:
            return np.where(logits == top, 0.0, -np.inf)
        t = float(self.temperature)
        if t >= 1.0 or float(np.abs(top).max(initial=0.0)) < 1e300 * t:
            return logits / t
        # z / T would overflow to +inf: shift by the row max first (same softmax, no overflow);
        # entries that overflow to -inf had probability exp(-huge) = 0 anyway.
        with np.errstate(over="ignore"):
            return (logits - top) / t


@dataclass(frozen=True)
class TopK(Processor):
    """Keep the ``top_k`` largest logits per row (and every token tied with the k-th), via partition.

    Example:
        >>> np.isfinite(TopK(2)(np.array([[1.0, 3.0, 2.0]]))).tolist()
        [[False, True, True]]
    """

    top_k: int
    name: ClassVar[str] = "top_k"

    def __post_init__(self) -> None:
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int | np.integer) or self.top_k < 1:
            raise _param_error("top_k", "an int >= 1", self.top_k)

    def __call__(self, logits: np.ndarray, history: History | None = None) -> np.ndarray:
        k = int(self.top_k)
        if k >= logits.shape[1]:
            return logits.copy()
        idx = candidate_superset(logits, k)
        rows = np.arange(logits.shape[0])[:, None]
        cand = np.where(idx >= 0, logits[rows, np.maximum(idx, 0)], -np.inf)
        c = cand.shape[1]
        kth = np.partition(cand, c - k, axis=1)[:, c - k : c - k + 1] if k <= c else -np.inf
        return _keep(logits, logits >= kth)


@dataclass(frozen=True)
class TopP(Processor):
    """Nucleus truncation: keep the smallest set ``{p >= tau}`` with mass ``>= top_p``.

    ``top_p`` in (0, 1]; 1 keeps everything. Ties at the boundary are all kept
    (Hugging Face keeps an arbitrary subset of them).

    Example:
        >>> z = np.log(np.array([[0.4, 0.3, 0.3]]))
        >>> np.isfinite(TopP(0.5)(z)).tolist()
        [[True, True, True]]
    """

    top_p: float
    name: ClassVar[str] = "top_p"

    def __post_init__(self) -> None:
        _in_range("top_p", self.top_p, 0.0, 1.0, lo_open=True, hi_open=False)

    def __call__(self, logits: np.ndarray, history: History | None = None) -> np.ndarray:
        if self.top_p >= 1.0:
            return logits.copy()
        return _keep(logits, logits >= top_p_threshold(logits, float(self.top_p))[:, None])


@dataclass(frozen=True)
class MinP(Processor):
    """Keep tokens with ``p >= min_p * max p``, i.e. ``z >= max z + log(min_p)``; ``min_p`` in [0, 1].

    Example:
        >>> z = np.log(np.array([[0.6, 0.3, 0.1]]))
        >>> np.isfinite(MinP(0.4)(z)).tolist()
        [[True, True, False]]
    """

    min_p: float
    name: ClassVar[str] = "min_p"

    def __post_init__(self) -> None:
        _in_range("min_p", self.min_p, 0.0, 1.0, lo_open=False, hi_open=False)

    def __call__(self, logits: np.ndarray, history: History | None = None) -> np.ndarray:
        if self.min_p == 0:
            return logits.copy()
        cut = logits.max(axis=1, keepdims=True) + math.log(float(self.min_p))
        return _keep(logits, logits >= cut)


@dataclass(frozen=True)
class Typical(Processor):
    """Locally typical sampling (Meister et al. 2022), as Hugging Face's ``TypicalLogitsWarper``.

    Keeps the tokens whose surprise is closest to the entropy, in that order,
    until their mass reaches ``typical_p`` (in (0, 1]; 1 keeps everything).

    Example:
        >>> z = np.log(np.array([[0.7, 0.2, 0.1]]))
        >>> int(np.isfinite(Typical(0.75)(z)).sum())
        2
    """

    typical_p: float
    name: ClassVar[str] = "typical_p"

    def __post_init__(self) -> None:
        _in_range("typical_p", self.typical_p, 0.0, 1.0, lo_open=True, hi_open=False)

    def __call__(self, logits: np.ndarray, history: History | None = None) -> np.ndarray:
        if self.typical_p >= 1.0:
            return logits.copy()
        logp = log_softmax(logits)
        p = np.exp(logp)
        entropy = _entropy(logp, p)
        shifted = np.abs(-logp - entropy)
        # take tokens by increasing |surprise - entropy| until their mass reaches typical_p (no full sort)
        cut = mass_threshold_ascending(shifted, p, np.full(logits.shape[0], float(self.typical_p)))
        return _keep(logits, shifted <= cut[:, None])


@dataclass(frozen=True)
class Epsilon(Processor):
    """Epsilon sampling (Hewitt et al. 2022): drop ``p < epsilon``, always keep the top token.

    Example:
        >>> np.isfinite(Epsilon(0.2)(np.log(np.array([[0.7, 0.25, 0.05]])))).tolist()
        [[True, True, False]]
    """

    epsilon: float
    name: ClassVar[str] = "epsilon"

    def __post_init__(self) -> None:
        _in_range("epsilon", self.epsilon, 0.0, 1.0, lo_open=True, hi_open=True)

    def __call__(self, logits: np.ndarray, history: History | None = None) -> np.ndarray:
        top = logits == logits.max(axis=1, keepdims=True)
        return _keep(logits, (softmax(logits) >= self.epsilon) | top)


@dataclass(frozen=True)
class Eta(Processor):
    """Eta sampling (Hewitt et al. 2022): drop ``p < min(eta, sqrt(eta) * exp(-H))``; keep the top token.

    Example:
        >>> int(np.isfinite(Eta(0.05)(np.log(np.array([[0.9, 0.09, 0.01]])))).sum())
        2
    """

    epsilon: float
    name: ClassVar[str] = "eta"

    def __post_init__(self) -> None:
        _in_range("eta", self.epsilon, 0.0, 1.0, lo_open=True, hi_open=True)

    def __call__(self, logits: np.ndarray, history: History | None = None) -> np.ndarray:
        logp = log_softmax(logits)
        p = np.exp(logp)
        entropy = _entropy(logp, p)
        eps = float(self.epsilon)
        cut = np.minimum(eps, math.sqrt(eps) * np.exp(-entropy))
        top = logits == logits.max(axis=1, keepdims=True)
        return _keep(logits, (p >= cut) | top)


@dataclass(frozen=True)
class TopNSigma(Processor):
    """Top-n-sigma (Tang et al. 2024): keep ``z >= max z - n * std(z)``.

    The standard deviation is over the row's finite logits (ddof 0), so the
    kept set does not change with temperature. ``n >= 0``. Hugging Face has no
    counterpart in the installed version.

    Example:
        >>> np.isfinite(TopNSigma(1.0)(np.array([[0.0, 0.0, 0.0, 4.0]]))).tolist()
        [[False, False, False, True]]
    """

    n: float
    name: ClassVar[str] = "top_n_sigma"

    def __post_init__(self) -> None:
        v = _real("top_n_sigma", self.n)
        if not (v >= 0 and math.isfinite(v)):
            raise _param_error("top_n_sigma", "a finite number >= 0", self.n)

    def __call__(self, logits: np.ndarray, history: History | None = None) -> np.ndarray:
        finite = np.isfinite(logits)
        count = finite.sum(axis=1, keepdims=True)
        zf = np.where(finite, logits, 0.0)
        mean = zf.sum(axis=1, keepdims=True) / count
        var = np.where(finite, (zf - mean) ** 2, 0.0).sum(axis=1, keepdims=True) / count
        cut = logits.max(axis=1, keepdims=True) - float(self.n) * np.sqrt(var)
        return _keep(logits, logits >= cut)


@dataclass(frozen=True)
class RepetitionPenalty(Processor):
    """Hugging Face / CTRL repetition penalty on tokens in the row's history.

    A seen token's logit ``z`` becomes ``z * penalty`` if ``z < 0`` else
    ``z / penalty``; ``penalty > 0`` (``> 1`` discourages repeats).

    Example:
        >>> RepetitionPenalty(2.0)(np.array([[2.0, -2.0, 1.0]]), [[0, 1]]).tolist()
        [[1.0, -4.0, 1.0]]
    """

    penalty: float
    name: ClassVar[str] = "repetition_penalty"
    needs_history: ClassVar[bool] = True

    def __post_init__(self) -> None:
        v = _real("repetition_penalty", self.penalty)
        if not (v > 0 and math.isfinite(v)):
            raise _param_error("repetition_penalty", "a finite number > 0", self.penalty)

    def __call__(self, logits: np.ndarray, history: History | None = None) -> np.ndarray:
        rows, tokens = _history_matrix(history, logits.shape, self.name)
        seen = np.zeros(logits.shape, dtype=bool)
        seen[rows, tokens] = True
        pen = float(self.penalty)
        penalised = np.where(logits < 0, logits * pen, logits / pen)
        return np.where(seen, penalised, logits)


@dataclass(frozen=True)
class OccurrencePenalty(Processor):
    """OpenAI-style presence and frequency penalties.

    ``z - presence * [count > 0] - frequency * count`` where ``count`` is how
    often the token occurs in the row's history. Both finite reals.

    Example:
        >>> OccurrencePenalty(1.0, 0.5)(np.zeros((1, 3)), [[0, 0, 1]]).tolist()
        [[-2.0, -1.5, 0.0]]
    """

    presence: float = 0.0
    frequency: float = 0.0
    name: ClassVar[str] = "occurrence_penalty"
    needs_history: ClassVar[bool] = True

    def __post_init__(self) -> None:
        for label, value in (("presence_penalty", self.presence), ("frequency_penalty", self.frequency)):
            if not math.isfinite(_real(label, value)):
                raise _param_error(label, "a finite number", value)

    def __call__(self, logits: np.ndarray, history: History | None = None) -> np.ndarray:
        rows, tokens = _history_matrix(history, logits.shape, "presence/frequency penalty")
        b, v = logits.shape
        counts = np.bincount(rows * v + tokens, minlength=b * v).reshape(b, v).astype(np.float64)
        return logits - float(self.presence) * (counts > 0) - float(self.frequency) * counts


@dataclass(frozen=True)
class NoRepeatNGram(Processor):
    """Forbid any token that would repeat an n-gram already in the row's history (as Hugging Face).

    Example:
        >>> z = NoRepeatNGram(2)(np.zeros((1, 3)), [[1, 2, 1]])
        >>> np.isfinite(z).tolist()
        [[True, True, False]]
    """

    size: int
    name: ClassVar[str] = "no_repeat_ngram"
    needs_history: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if isinstance(self.size, bool) or not isinstance(self.size, int | np.integer) or self.size < 1:
            raise _param_error("no_repeat_ngram_size", "an int >= 1", self.size)

    def __call__(self, logits: np.ndarray, history: History | None = None) -> np.ndarray:
        _history_matrix(history, logits.shape, "no_repeat_ngram_size")
        assert history is not None
        n = int(self.size)
        ban_rows: list[int] = []
        ban_tokens: list[int] = []
        for row, seq in enumerate(history):
            h = [int(t) for t in seq]
            if len(h) + 1 < n:
                continue
            prefix = tuple(h[len(h) - n + 1 :]) if n > 1 else ()
            for i in range(len(h) - n + 1):
                if tuple(h[i : i + n - 1]) == prefix:
                    ban_rows.append(row)
                    ban_tokens.append(h[i + n - 1])
        if not ban_rows:
            return logits.copy()
        out = logits.copy()
        out[np.asarray(ban_rows), np.asarray(ban_tokens)] = -np.inf
        _check_nonempty(out, f"no_repeat_ngram_size={n}")
        return out


@dataclass(frozen=True)
class LogitBias(Processor):
    """Add ``bias[token]`` to that token's logit (``-inf`` bans it; ``+inf`` is refused).

    Example:
        >>> LogitBias({1: -1.0})(np.zeros((1, 2))).tolist()
        [[0.0, -1.0]]
    """

    bias: Mapping[int, float] = field(default_factory=dict)
    name: ClassVar[str] = "logit_bias"

    def __post_init__(self) -> None:
        if not isinstance(self.bias, Mapping):
            raise _param_error("logit_bias", "a mapping {token_id: bias}", self.bias)
        for token, value in self.bias.items():
            if isinstance(token, bool) or not isinstance(token, int | np.integer):
                raise _param_error("logit_bias", "keyed by int token ids", token)
            if math.isnan(_real("logit_bias", value)) or value == math.inf:
                raise _param_error("logit_bias", "finite or -inf biases", value)

    def __call__(self, logits: np.ndarray, history: History | None = None) -> np.ndarray:
        if not self.bias:
            return logits.copy()
        ids = np.fromiter(self.bias.keys(), dtype=np.int64)
        _check_ids_in_vocab("logit_bias", ids, logits.shape[1])
        add = np.zeros(logits.shape[1])
        np.add.at(add, ids, np.fromiter(self.bias.values(), dtype=np.float64))
        out = logits + add
        _check_nonempty(out, "logit_bias")
        return out


@dataclass(frozen=True)
class AllowedTokens(Processor):
    """Keep only the listed token ids.

    Example:
        >>> np.isfinite(AllowedTokens((0, 2))(np.zeros((1, 3)))).tolist()
        [[True, False, True]]
    """

    tokens: Sequence[int]
    name: ClassVar[str] = "allowed_tokens"

    def __post_init__(self) -> None:
        object.__setattr__(self, "tokens", tuple(int(t) for t in _token_ids("allowed_tokens", self.tokens)))

    def __call__(self, logits: np.ndarray, history: History | None = None) -> np.ndarray:
        ids = np.asarray(self.tokens, dtype=np.int64)
        _check_ids_in_vocab("allowed_tokens", ids, logits.shape[1])
        keep = np.zeros(logits.shape[1], dtype=bool)
        keep[ids] = True
        out = _keep(logits, keep[None, :])
        _check_nonempty(out, "allowed_tokens")
        return out


@dataclass(frozen=True)
class ForbiddenTokens(Processor):
    """Remove the listed token ids.

    Example:
        >>> np.isfinite(ForbiddenTokens((0,))(np.zeros((1, 2)))).tolist()
        [[False, True]]
    """

    tokens: Sequence[int]
    name: ClassVar[str] = "forbidden_tokens"

    def __post_init__(self) -> None:
        object.__setattr__(self, "tokens", tuple(int(t) for t in _token_ids("forbidden_tokens", self.tokens)))

    def __call__(self, logits: np.ndarray, history: History | None = None) -> np.ndarray:
        ids = np.asarray(self.tokens, dtype=np.int64)
        _check_ids_in_vocab("forbidden_tokens", ids, logits.shape[1])
        out = logits.copy()
        out[:, ids] = -np.inf
        _check_nonempty(out, "forbidden_tokens")
        return out


def apply_processors(
    logits: np.ndarray, processors: Sequence[Processor], history: History | None = None
) -> np.ndarray:
    """Apply ``processors`` in the given order to validated float64 ``(B, V)`` logits.

    Returns a new array even when ``processors`` is empty; ``logits`` is not modified.

    Raises:
        EmptySupportError: a mask left a row with no token.

    Example:
        >>> apply_processors(np.array([[1.0, 2.0]]), [Temperature(2.0)]).tolist()
        [[0.5, 1.0]]
    """
    z = logits.copy() if not processors else logits
    # A penalty that overflows a very negative logit to -inf is the right limit (probability 0);
    # overflow to +inf is caught by the sampler's check of the result.
    with np.errstate(over="ignore"):
        for proc in processors:
            z = proc(z, history)
    return z
