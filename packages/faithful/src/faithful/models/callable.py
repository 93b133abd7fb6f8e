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
    log_normalize,
)

__all__ = ["CallableModel", "PrefixState"]


@dataclass(frozen=True)
class PrefixState:
    """State of a :class:`CallableModel`: the full token prefix of each row (prompt included)."""

    prefixes: tuple[tuple[int, ...], ...]


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

    def select(self, state: PrefixState, indices: IntArray) -> PrefixState:
        """Reorder/repeat rows."""
        idx = as_index_array(indices, len(state.prefixes))
        return PrefixState(tuple(state.prefixes[int(i)] for i in idx))
