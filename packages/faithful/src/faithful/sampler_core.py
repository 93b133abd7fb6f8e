"""The :class:`Sampler` object and what one call of it does; built by :mod:`faithful.samplers`.

Holds :class:`SampleResult` (what a call returns), :class:`Sampler` (processors plus a
draw: the compiled fused kernel, the numpy candidate kernels of :mod:`faithful.selection`,
or the dense float64 reference, in that order of preference) and the checks of its
arguments (row ids, the ``kernels`` choice). :func:`faithful.samplers.make_sampler`,
:func:`~faithful.samplers.greedy` and :func:`~faithful.samplers.parse_sampler_spec` build
it; every name here is also importable from :mod:`faithful.samplers`, whose docstring
describes how a call runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from faithful.draw import band_search, gumbel_max
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
from faithful.rng import RngLike, resolve_rng
from faithful.selection import argmax_checked, sample_truncated
from faithful.tensors import is_torch_tensor, to_numpy_logits

__all__ = ["KERNELS", "SampleResult", "Sampler"]


@dataclass(frozen=True)
class SampleResult:
    """What a sampler returns (numpy arrays; a sampler on ``backend="torch"`` called with a tensor
    returns :class:`faithful.torch_backend.TorchSampleResult`, the same fields as tensors on the
    logits' device).

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
            f"`rows` must be {b} int row ids (one per logits row, each within int64), "
            f"got shape {arr.shape} of dtype {arr.dtype}"
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
        if self.backend == "torch" and is_torch_tensor(logits):
            from faithful.torch_backend import distribution_tensor

            # A torch tensor on the logits' device (documented above), typed as the reference's result.
            q_device: np.ndarray = distribution_tensor(
                self, logits, history=history, rows=rows, rng=rng, step=step
            )
            return q_device
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
        if self.backend == "torch" and is_torch_tensor(logits):
            # the device path: torch ops where the tensor lives, tensors back (faithful.torch_backend)
            from faithful.torch_backend import sample_tensor

            return sample_tensor(
                self, logits, rng=rng, step=step, rows=rows, history=history, return_q=return_q
            )
        if self.draw == "argmax" and not return_q:
            x = np.asarray(to_numpy_logits(logits, self.backend) if is_torch_tensor(logits) else logits)
            if x.dtype.kind == "f" and x.ndim == 2 and x.shape[1] > 0:
                _check_rows(rows, x.shape[0])
                return SampleResult(argmax_checked(_as_float64_or_32(x)), np.zeros(x.shape[0]), None)
        source: Any = rng
        if self._fused is not None:
            fast_input = self._fast_path_input(logits, rows, history, rng, step)
            if fast_input is not None:
                from faithful.kernels import sample_fused

                x, u, keyed, seed = fast_input
                return SampleResult(*sample_fused(x, u, self._fused, return_q=return_q), seed=seed)
        if self._fast is not None:
            fast_input = self._fast_path_input(logits, rows, history, rng, step)
            if fast_input is not None:
                x, u, keyed, seed = fast_input
                with np.errstate(over="ignore"):  # z / T -> -inf for hugely negative z: probability 0
                    fast = sample_truncated(x, u, return_q=return_q, **self._fast)
                if fast is not None:
                    return SampleResult(*fast, seed=seed)
                source = keyed  # the reference path below draws with the same uniforms
        with np.errstate(over="ignore"):  # exp(-huge) -> 0 is the right limit
            return self._sample_reference(logits, source, step, rows, history, return_q)

    def _fast_path_input(
        self,
        logits: Any,
        rows: Sequence[int] | np.ndarray | None,
        history: History | None,
        rng: Any,
        step: int,
    ) -> tuple[np.ndarray, np.ndarray, _Uniforms, int | None] | None:
        """The logits and each row's keyed uniform for the compiled paths; None where only the reference
        applies (not a non-empty 2-D float array: the reference gives that input its own error)."""
        x = np.asarray(to_numpy_logits(logits, self.backend) if is_torch_tensor(logits) else logits)
        if not (x.dtype.kind == "f" and x.ndim == 2 and x.shape[0] > 0 and x.shape[1] > 0):
            return None
        x = _as_float64_or_32(x)
        row_ids = _check_rows(rows, x.shape[0])
        if history is not None and len(history) != x.shape[0]:
            raise ShapeMismatchError(
                f"`history` must have one sequence per row ({x.shape[0]}), got {len(history)}"
            )
        keyed, seed = _uniform_source(rng)
        return x, keyed.uniforms(row_ids, step, 1)[:, 0], keyed, seed

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


def _as_float64_or_32(x: np.ndarray) -> np.ndarray:
    """Float logits as the compiled paths read them: float32/float64 as they are, any other float as
    the float64 values the reference validates and samples. A float128 logit past float64's range is
    +-inf there (an error, or probability 0); the numpy candidate kernels drew token -1 or a NaN log q
    from it, and greedy took a token the reference refuses."""
    if x.dtype in (np.float32, np.float64):
        return x
    with np.errstate(over="ignore"):
        return x.astype(np.float64)


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
