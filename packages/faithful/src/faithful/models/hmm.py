"""A hidden Markov model as a language model over its observation symbols."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from faithful.models.base import FloatArray, IntArray, ModelError, as_index_array, as_prompts

__all__ = ["HMMModel", "HMMState"]


@dataclass(frozen=True)
class HMMState:
    """State of an :class:`HMMModel`: ``(B, S)`` log-probabilities of the hidden state of the next token."""

    log_belief: FloatArray


def _check_stochastic(name: str, a: FloatArray, shape: tuple[int, ...]) -> None:
    if a.shape != shape:
        raise ModelError(f"{name} must have shape {shape}, got {a.shape}")
    if np.any(a < 0) or not np.allclose(a.sum(axis=-1), 1.0, atol=1e-8):
        raise ModelError(f"{name} must be non-negative with rows summing to 1")


class HMMModel:
    """A categorical HMM; ``P(next observation | observations so far)`` by forward filtering.

    Args:
        startprob: ``(S,)`` initial hidden-state probabilities.
        transmat: ``(S, S)`` with ``transmat[i, j] = P(z_{t+1} = j | z_t = i)``.
        emissionprob: ``(S, V)`` with ``emissionprob[i, v] = P(x_t = v | z_t = i)``.
        eos_token_id: an observation symbol that ends a sequence, or None.

    Raises:
        ModelError: on wrong shapes or non-stochastic rows.

    The parameter names follow hmmlearn's ``CategoricalHMM``; ``HMMModel.from_hmmlearn(m)`` copies one.

    Example::

        >>> hmm = HMMModel([1.0, 0.0], [[0.0, 1.0], [1.0, 0.0]], [[1.0, 0.0], [0.0, 1.0]])
        >>> np.exp(hmm.next_logprobs(hmm.start([[0]]))).tolist()
        [[0.0, 1.0]]
    """

    def __init__(
        self,
        startprob: npt.ArrayLike,
        transmat: npt.ArrayLike,
        emissionprob: npt.ArrayLike,
        eos_token_id: int | None = None,
    ) -> None:
        pi = np.asarray(startprob, dtype=np.float64)
        a = np.asarray(transmat, dtype=np.float64)
        b = np.asarray(emissionprob, dtype=np.float64)
        if pi.ndim != 1:
            raise ModelError(f"startprob must be 1-D (S,), got shape {pi.shape}")
        s = pi.shape[0]
        _check_stochastic("startprob", pi, (s,))
        _check_stochastic("transmat", a, (s, s))
        if b.ndim != 2:
            raise ModelError(f"emissionprob must be 2-D (S, V), got shape {b.shape}")
        _check_stochastic("emissionprob", b, (s, b.shape[1]))
        self.startprob, self.transmat, self.emissionprob = pi, a, b
        self.n_states = s
        self.vocab_size = int(b.shape[1])
        if eos_token_id is not None and not 0 <= eos_token_id < self.vocab_size:
            raise ModelError(f"eos_token_id must be in 0..{self.vocab_size - 1}, got {eos_token_id}")
        self.eos_token_id = eos_token_id
        with np.errstate(divide="ignore"):
            self.log_startprob = np.log(pi)
            self.log_transmat = np.log(a)
            self.log_emissionprob = np.log(b)

    @classmethod
    def from_hmmlearn(cls, model: object, eos_token_id: int | None = None) -> HMMModel:
        """Copy the parameters of a fitted hmmlearn ``CategoricalHMM``."""
        return cls(
            model.startprob_,  # type: ignore[attr-defined]
            model.transmat_,  # type: ignore[attr-defined]
            model.emissionprob_,  # type: ignore[attr-defined]
            eos_token_id=eos_token_id,
        )

    def start(self, prompts: Sequence[Sequence[int]]) -> HMMState:
        """Return the filtered hidden-state belief after each prompt (empty prompts are fine).

        Raises:
            ModelError: when a prompt has probability zero under the model.
        """
        rows = as_prompts(prompts, self.vocab_size)
        state = HMMState(np.tile(self.log_startprob, (len(rows), 1)))
        for i, row in enumerate(rows):
            single = HMMState(state.log_belief[i : i + 1])
            for t in row:
                single = self.advance(single, np.array([t], dtype=np.int64))
            state.log_belief[i] = single.log_belief[0]
        if not np.all(np.isfinite(state.log_belief.max(axis=1))):
            raise ModelError("a prompt has probability zero under this HMM; it cannot be conditioned on")
        return state

    def next_logprobs(self, state: HMMState) -> FloatArray:
        """Return ``(B, V)`` log-probabilities ``log sum_s P(z=s | past) P(x=v | z=s)``."""
        x = state.log_belief[:, :, None] + self.log_emissionprob[None, :, :]
        peak = np.max(x, axis=1, keepdims=True)
        peak = np.where(np.isfinite(peak), peak, 0.0)
        with np.errstate(divide="ignore"):
            out: FloatArray = np.log(np.exp(x - peak).sum(axis=1)) + peak[:, 0, :]
        return out

    def advance(self, state: HMMState, tokens: IntArray) -> HMMState:
        """Condition on one observation per row, then step the hidden state once."""
        toks = as_index_array(tokens, self.vocab_size)
        if toks.shape[0] != state.log_belief.shape[0]:
            raise ModelError(
                f"expected {state.log_belief.shape[0]} tokens (one per row), got {toks.shape[0]}"
            )
        post = state.log_belief + self.log_emissionprob[:, toks].T
        peak = np.max(post, axis=1, keepdims=True)
        # A zero-probability observation (e.g. padding after EOS) leaves an all -inf row rather than raising:
        # decoders ignore finished rows, and start() checks prompts itself.
        impossible = ~np.isfinite(peak)
        p = np.exp(post - np.where(impossible, 0.0, peak))
        total = p.sum(axis=1, keepdims=True)
        p = p / np.where(impossible, 1.0, total)
        with np.errstate(divide="ignore"):
            return HMMState(np.log(p @ self.transmat))

    def select(self, state: HMMState, indices: IntArray) -> HMMState:
        """Reorder/repeat rows."""
        idx = as_index_array(indices, state.log_belief.shape[0])
        return HMMState(state.log_belief[idx])
