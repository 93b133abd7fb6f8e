"""What every decoder shares: the result type, errors, the sampler protocol and keyed uniforms."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from faithful.errors import FaithfulError
from faithful.models.base import FloatArray, IntArray, LanguageModel, ModelError
from faithful.rng import UniformSource, resolve_rng

__all__ = [
    "PAD",
    "BeamWidthError",
    "DecodeError",
    "DecodeResult",
    "InvalidLengthError",
    "KeyedUniforms",
    "TokenSampler",
    "count_sequences",
    "draws_from_the_model",
    "log_softmax_at",
    "reads_history",
    "resolve_rng",
    "scores_array",
]

BoolArray = npt.NDArray[np.bool_]
PAD = -1
"""The id that pads ``DecodeResult.tokens`` past each sequence's end."""


class DecodeError(FaithfulError, ValueError):
    """A decoder was called with arguments it cannot honour."""


class InvalidLengthError(DecodeError):
    """``max_new_tokens`` (or another length) is out of range."""


class BeamWidthError(DecodeError):
    """A beam/sample width is below 1 or above the number of distinct sequences the model can produce."""


@dataclass(frozen=True)
class DecodeResult:
    """Sequences decoded for a batch of ``B`` prompts, ``K`` candidates each.

    Attributes:
        tokens: int64 ``(B, K, T)`` generated ids (prompt excluded), padded with ``PAD`` (-1) after each
            sequence's end; an ending EOS is included.
        lengths: int64 ``(B, K)`` number of generated tokens of each candidate.
        logprobs: float64 ``(B, K)`` log-probability of each continuation under the *model*
            (sum of ``token_logprobs``); exact, untempered, unprocessed.
        token_logprobs: float64 ``(B, K, T)`` per-token model log-probabilities (0 at padding).
        scores: float64 ``(B, K)`` what the decoder ranked by (beam: length-normalised score; stochastic
            beam: the Gumbel key; sampling: the model log-probability). Candidates are sorted by it, best first.
        finished: bool ``(B, K)`` whether the candidate ended with EOS (False: cut at ``max_new_tokens``).
        distributions: float64 ``(B, K, T, V)`` the next-token distribution at each step that the decoder
            drew from (sampling: the sampler's ``q``; greedy/beam: the model's distribution that was ranked),
            zeros at padding; None unless requested with ``return_distributions=True``.
        proposal_logprobs: float64 ``(B, K)`` log-probability of each candidate under the per-step
            distributions drawn from (differs from ``logprobs`` under temperature/top-k/top-p); None
            for deterministic decoders.
        extras: decoder-specific values (e.g. stochastic beam's ``inclusion_probs``).

    Example::

        >>> r = DecodeResult.from_lists([[[1, 2]]], [[[-0.5, -0.25]]], finished=[[True]])
        >>> r.best(), r.logprobs.tolist()
        ([[1, 2]], [[-0.75]])
    """

    tokens: IntArray
    lengths: IntArray
    logprobs: FloatArray
    token_logprobs: FloatArray
    scores: FloatArray
    finished: BoolArray
    distributions: FloatArray | None = None
    proposal_logprobs: FloatArray | None = None
    extras: dict[str, Any] | None = None

    @property
    def batch_size(self) -> int:
        """``B``."""
        return int(self.tokens.shape[0])

    @property
    def num_candidates(self) -> int:
        """``K``."""
        return int(self.tokens.shape[1])

    def sequences(self) -> list[list[list[int]]]:
        """Return the candidates as nested lists ``[b][k] -> token ids`` (no padding)."""
        return [
            [self.tokens[b, k, : self.lengths[b, k]].tolist() for k in range(self.tokens.shape[1])]
            for b in range(self.tokens.shape[0])
        ]

    def best(self) -> list[list[int]]:
        """Return the first (best-ranked) candidate of each prompt."""
        return [self.tokens[b, 0, : self.lengths[b, 0]].tolist() for b in range(self.tokens.shape[0])]

    @classmethod
    def from_lists(
        cls,
        tokens: Sequence[Sequence[Sequence[int]]],
        token_logprobs: Sequence[Sequence[Sequence[float]]],
        *,
        finished: Sequence[Sequence[bool]],
        scores: npt.ArrayLike | None = None,
        proposal_logprobs: npt.ArrayLike | None = None,
        extras: dict[str, Any] | None = None,
    ) -> DecodeResult:
        """Build a result from ragged ``[b][k]`` lists (padding is added)."""
        b = len(tokens)
        k = max((len(r) for r in tokens), default=0)
        t = max((len(s) for r in tokens for s in r), default=0)
        tok = np.full((b, k, t), PAD, dtype=np.int64)
        tlp = np.zeros((b, k, t))
        lengths = np.zeros((b, k), dtype=np.int64)
        for i, row in enumerate(tokens):
            for j, seq in enumerate(row):
                tok[i, j, : len(seq)] = seq
                tlp[i, j, : len(seq)] = token_logprobs[i][j]
                lengths[i, j] = len(seq)
        lp = tlp.sum(axis=2)
        return cls(
            tokens=tok,
            lengths=lengths,
            logprobs=lp,
            token_logprobs=tlp,
            scores=lp.copy() if scores is None else np.asarray(scores, dtype=np.float64),
            finished=np.asarray(finished, dtype=bool).reshape(b, k),
            proposal_logprobs=None
            if proposal_logprobs is None
            else np.asarray(proposal_logprobs, np.float64),
            extras=extras,
        )


class SampleResultLike(Protocol):
    """What a token sampler returns (``faithful.samplers.SampleResult``)."""

    @property
    def tokens(self) -> np.ndarray: ...

    @property
    def logprobs(self) -> np.ndarray: ...

    @property
    def q(self) -> np.ndarray | None: ...


class TokenSampler(Protocol):
    """A token-level sampler (``faithful.samplers.Sampler``): draws one token per row from logits.

    ``__call__(logits (B, V), *, rng, step, rows, history, return_q)`` returns tokens ``(B,)``, their
    log-probabilities under the sampler's distribution ``q`` and, on request, ``q`` itself ``(B, V)``.
    Draws depend only on ``(seed, row, step)``, so sub-batches reproduce the full batch's draws.
    """

    def __call__(
        self,
        logits: Any,
        *,
        rng: Any = None,
        step: int = 0,
        rows: Any = None,
        history: Any = None,
        return_q: bool = False,
    ) -> SampleResultLike: ...

    def distribution(self, logits: Any, *, history: Any = None) -> np.ndarray: ...


# The one resolver lives in faithful.rng; decoders import it from here as before.
KeyedUniforms = UniformSource

# Rows per block when a float64 pass over float32 logits needs a float64 copy: bounds the
# temporary to a few MB whatever the batch.
_BLOCK_ROWS = 16


def scores_array(scores: Any) -> npt.NDArray[np.floating[Any]]:
    """A model's raw scores as a numpy array, shared without a copy where possible (CPU torch tensors).

    Args:
        scores: ``(B, V)`` numpy array or torch tensor (:func:`faithful.models.base.model_logits`).

    Returns:
        ``(B, V)`` float numpy array in the model's own dtype (half types become float32); never written to.
    """
    if type(scores).__module__.startswith("torch"):
        from faithful.tensors import tensor_to_numpy

        scores = tensor_to_numpy(scores)
    arr = np.asarray(scores)
    if arr.dtype.kind != "f":
        arr = arr.astype(np.float64)
    return arr


def log_softmax_at(scores: npt.NDArray[np.floating[Any]], tokens: IntArray) -> FloatArray:
    """``log_softmax(scores)[b, tokens[b]]`` per row, the normaliser summed in float64.

    One exp pass over each row; float32 rows are widened block by block, so no
    ``(B, V)`` float64 copy is made. Rows entirely ``-inf`` give ``-inf``.

    Args:
        scores: ``(B, V)`` float logits. tokens: int64 ``(B,)``.

    Returns:
        float64 ``(B,)``.

    Example::

        >>> log_softmax_at(np.array([[0.0, 0.0]], dtype=np.float32), np.array([1])).round(4).tolist()
        [-0.6931]
    """
    b = scores.shape[0]
    out = np.empty(b)
    rows = np.arange(b)
    for lo in range(0, b, _BLOCK_ROWS):
        z = np.asarray(scores[lo : lo + _BLOCK_ROWS], dtype=np.float64)
        m = z.max(axis=1)
        m = np.where(np.isfinite(m), m, 0.0)
        with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
            total = np.exp(z - m[:, None]).sum(axis=1)
            picked = z[rows[: z.shape[0]], tokens[lo : lo + _BLOCK_ROWS]]
            out[lo : lo + _BLOCK_ROWS] = np.where(total > 0, picked - m - np.log(total), -np.inf)
    return out


def reads_history(sampler: Any) -> bool:
    """Whether ``sampler`` may read the tokens so far; False only for faithful samplers whose
    processors all ignore history (then a decoder need not build it every step)."""
    from faithful.samplers import Sampler

    if not isinstance(sampler, Sampler):
        return True
    return any(getattr(p, "needs_history", True) for p in sampler.processors)


def draws_from_the_model(sampler: Any) -> bool:
    """True when ``sampler`` is faithful's plain sampler: its ``q`` is the model's distribution.

    Its ``logprobs`` are then the model's log-probabilities of the drawn tokens, from the
    sampler's own float64 normaliser, and a decoder need not sum the row again.
    """
    from faithful.samplers import Sampler

    return (
        isinstance(sampler, Sampler)
        and not sampler.processors
        and sampler.mirostat is None
        and sampler.draw in ("inverse_cdf", "gumbel")
    )


def check_max_new_tokens(max_new_tokens: int) -> int:
    """Validate ``max_new_tokens >= 1``."""
    if not isinstance(max_new_tokens, int | np.integer) or max_new_tokens < 1:
        raise InvalidLengthError(f"max_new_tokens must be an integer >= 1, got {max_new_tokens!r}")
    return int(max_new_tokens)


def count_sequences(
    vocab_size: int, eos_token_id: int | None, max_new_tokens: int, *, cap: int | None = None
) -> int:
    """Upper bound on the distinct continuations of length ``<= max_new_tokens`` (EOS ends a sequence).

    With ``cap``, the count stops growing once it passes ``cap`` (the result is then some number
    ``> cap``): the exact count is a number of ``max_new_tokens * log10(V)`` digits, and summing it
    took 24 s for GPT-2's vocabulary and 16k tokens, before a beam search with width 4 started.
    """
    # The count never falls as max_new_tokens grows and is >= 2**max_new_tokens when V >= 2 without
    # EOS or V >= 3 with it (V = 2 with EOS counts T + 1): at 2**t > cap it has passed cap.
    if cap is not None and (vocab_size >= 3 or (vocab_size == 2 and eos_token_id is None)):
        max_new_tokens = min(max_new_tokens, cap.bit_length() + 1)
    if eos_token_id is None:
        return int(vocab_size**max_new_tokens)
    other = vocab_size - 1
    return int(sum(other ** (t - 1) for t in range(1, max_new_tokens + 1)) + other**max_new_tokens)


def check_width(name: str, width: int, model: LanguageModel, max_new_tokens: int) -> int:
    """Validate a beam/sample width against the number of distinct sequences."""
    if isinstance(width, bool) or not isinstance(width, int | np.integer) or width < 1:
        raise BeamWidthError(f"{name} must be an integer >= 1, got {width!r}")
    possible = count_sequences(model.vocab_size, model.eos_token_id, max_new_tokens, cap=int(width))
    if width > possible:
        raise BeamWidthError(
            f"{name}={width} exceeds the {possible} distinct sequences of at most {max_new_tokens} tokens "
            f"over a vocabulary of {model.vocab_size}; lower {name} or raise max_new_tokens"
        )
    return int(width)


def start_expanded(model: LanguageModel, prompts: Sequence[Sequence[int]], copies: int) -> tuple[Any, int]:
    """Start the model on ``prompts`` and repeat each row ``copies`` times (row ``b * copies + k``)."""
    if isinstance(prompts, str):
        raise ModelError("prompts must be token ids, got a str; encode it with the model's tokenizer first")
    state = model.start(prompts)
    b = len(prompts)
    if copies > 1:
        state = model.select(state, np.repeat(np.arange(b, dtype=np.int64), copies))
    return state, b
