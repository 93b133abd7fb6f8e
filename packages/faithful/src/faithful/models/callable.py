"""Adapter: any Python function from token prefixes to next-token scores is a model."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from faithful.models.base import (
    EmptyPromptError,
    FloatArray,
    IntArray,
    ModelError,
    as_index_array,
    as_prompts,
    check_block,
    log_normalize,
)

__all__ = ["CallableModel", "PrefixBlock", "PrefixState"]


@dataclass(frozen=True)
class PrefixState:
    """State of a :class:`CallableModel`: the full token prefix of each row (prompt included)."""

    prefixes: tuple[tuple[int, ...], ...]


@dataclass(frozen=True)
class PrefixBlock:
    """A block of tokens scored by :meth:`CallableModel.score_block`: ``(B, g, V)`` scores and the prefixes."""

    scores: FloatArray
    prefixes: tuple[tuple[tuple[int, ...], ...], ...]  # [j - 1]: every row's prefix after j tokens

    def logits_at(self, i: int) -> FloatArray:
        """``(B, V)`` scores after ``i + 1`` tokens of the block."""
        out: FloatArray = self.scores[:, i]
        return out

    def state(self, j: int) -> PrefixState:
        """The state after ``j`` tokens of the block, ``1 <= j <= g``."""
        if not 1 <= j <= len(self.prefixes):
            raise ModelError(
                f"a block of {len(self.prefixes)} tokens has states 1..{len(self.prefixes)}, got {j}"
            )
        return PrefixState(self.prefixes[j - 1])


class CallableModel:
    """Wrap ``fn(prefixes) -> (B, V) scores`` as a :class:`~faithful.models.base.LanguageModel`.

    The function receives a list of ``B`` token prefixes (each a tuple of ints,
    prompt included) and returns ``(B, V)`` logits or log-probabilities; they are
    log-normalised in float64, so exact probabilities are ``exp`` of the result.

    Args:
        fn: the scoring function. It is called once per decoding step with the whole batch.
        vocab_size: ``V``.
        eos_token_id: the id ending a sequence, or None.
        allow_empty_prompt: when False, an empty prompt raises :class:`EmptyPromptError`.

    Raises:
        ModelError: when ``fn`` returns the wrong shape.

    Example::

        >>> import numpy as np
        >>> coin = CallableModel(lambda prefixes: np.log([[0.55, 0.45]] * len(prefixes)), vocab_size=2)
        >>> np.exp(coin.next_logprobs(coin.start([[]]))).round(2).tolist()
        [[0.55, 0.45]]
    """

    def __init__(
        self,
        fn: Callable[[list[tuple[int, ...]]], npt.ArrayLike],
        vocab_size: int,
        eos_token_id: int | None = None,
        *,
        allow_empty_prompt: bool = True,
    ) -> None:
        if vocab_size < 1:
            raise ModelError(f"vocab_size must be >= 1, got {vocab_size}")
        if eos_token_id is not None and not 0 <= eos_token_id < vocab_size:
            raise ModelError(f"eos_token_id must be in 0..{vocab_size - 1}, got {eos_token_id}")
        self.fn = fn
        self.vocab_size = int(vocab_size)
        self.eos_token_id = eos_token_id
        self.allow_empty_prompt = allow_empty_prompt

    def start(self, prompts: Sequence[Sequence[int]]) -> PrefixState:
        """Return the state of ``B`` rows holding the prompts (see the class docstring)."""
        rows = as_prompts(prompts, self.vocab_size)
        if not self.allow_empty_prompt and any(len(r) == 0 for r in rows):
            raise EmptyPromptError("this model needs a non-empty prompt; pass at least one token per row")
        return PrefixState(tuple(tuple(r) for r in rows))

    def next_logits(self, state: PrefixState) -> FloatArray:
        """Return ``fn``'s ``(B, V)`` scores as float64, as they are (samplers' processors read these)."""
        scores = np.asarray(self.fn(list(state.prefixes)), dtype=np.float64)
        expected = (len(state.prefixes), self.vocab_size)
        if scores.shape != expected:
            raise ModelError(f"the model function returned shape {scores.shape}, expected {expected} (B, V)")
        return scores

    def next_logprobs(self, state: PrefixState) -> FloatArray:
        """Return ``(B, V)`` float64 log-probabilities from ``fn``, log-normalised."""
        return log_normalize(self.next_logits(state))

    def advance(self, state: PrefixState, tokens: IntArray) -> PrefixState:
        """Append one token per row."""
        toks = as_index_array(tokens, self.vocab_size)
        if toks.shape[0] != len(state.prefixes):
            raise ModelError(f"expected {len(state.prefixes)} tokens (one per row), got {toks.shape[0]}")
        return PrefixState(tuple((*p, int(t)) for p, t in zip(state.prefixes, toks, strict=True)))

    def score_block(self, state: PrefixState, tokens: IntArray) -> PrefixBlock:
        """Scores after each of ``g`` tokens per row (``tokens`` int64 ``(B, g)``): ``fn`` called once.

        ``fn`` gets the ``B * g`` prefixes in one list (row by row, shortest first), so a function
        that scores a batch in one go scores the block in one go; the numbers are ``fn``'s.
        """
        toks = check_block(tokens, len(state.prefixes), self.vocab_size)
        b, g = toks.shape
        steps = tuple(
            tuple((*p, *(int(t) for t in toks[r, : j + 1])) for r, p in enumerate(state.prefixes))
            for j in range(g)
        )
        flat = [steps[j][r] for r in range(b) for j in range(g)]
        scores = np.asarray(self.fn(flat), dtype=np.float64)
        if scores.shape != (b * g, self.vocab_size):
            raise ModelError(
                f"the model function returned shape {scores.shape} for {b * g} prefixes, "
                f"expected {(b * g, self.vocab_size)} (B, V)"
            )
        return PrefixBlock(scores.reshape(b, g, self.vocab_size), steps)

    def select(self, state: PrefixState, indices: IntArray) -> PrefixState:
        """Reorder/repeat rows."""
        idx = as_index_array(indices, len(state.prefixes))
        return PrefixState(tuple(state.prefixes[int(i)] for i in idx))
