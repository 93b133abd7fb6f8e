"""The one model protocol every decoder speaks, and the errors models raise.

A model is anything that, given a batch of states, returns next-token
log-probabilities. Decoders never look inside a state: they only ``start`` it
from prompts, read ``next_logprobs``, ``advance`` it by one token per row and
``select`` rows (beam reordering and expansion). That is enough for greedy,
sampling, beam search and exact enumeration of sequence distributions.

A model may also offer ``next_logits(state)``: its raw next-token scores, in its
own array type and dtype (a float32 torch tensor for a Hugging Face model). Token
samplers' processors are defined on raw logits (a repetition penalty divides
positive logits and multiplies negative ones, as in Hugging Face), so the
sampling decoders hand samplers :func:`model_logits`, which is ``next_logits``
when the model has it and ``next_logprobs`` otherwise (n-gram and HMM models
have no scores but their log-probabilities).

A model may also offer ``score_block(state, tokens)``: the logits after each of ``g`` tokens
per row, computed at once (one forward pass over the block for a Hugging Face model, with the
KV cache), and the state after any prefix of the block. Speculative decoding verifies ``g``
draft tokens with it in one target call. :func:`score_block` calls it when the model has it and
otherwise advances one token at a time (same numbers, ``g`` calls); :class:`BlockScoring` is the
optional part of the protocol, checked with ``isinstance``.

Example::

    >>> import numpy as np
    >>> from faithful.models import CallableModel
    >>> uniform = CallableModel(lambda prefixes: np.zeros((len(prefixes), 3)), vocab_size=3)
    >>> state = uniform.start([[0], [1, 2]])
    >>> np.exp(uniform.next_logprobs(state)).round(3).tolist()
    [[0.333, 0.333, 0.333], [0.333, 0.333, 0.333]]
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from faithful._numeric import log_softmax
from faithful.errors import FaithfulError

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

__all__ = [
    "BlockScoring",
    "EmptyPromptError",
    "FloatArray",
    "IntArray",
    "LanguageModel",
    "ModelError",
    "ScoredBlock",
    "VocabMismatchError",
    "as_index_array",
    "as_prompts",
    "log_normalize",
    "model_logits",
    "score_block",
]


class ModelError(FaithfulError, ValueError):
    """A model was built or called with input it cannot handle."""


class EmptyPromptError(ModelError):
    """A prompt was empty where the model needs at least one token to condition on."""


class VocabMismatchError(ModelError):
    """A tokenizer/vocabulary and a model disagree about the vocabulary, or a token id is out of range."""


@runtime_checkable
class LanguageModel(Protocol):
    """Batched next-token log-probabilities from an opaque, per-row state.

    Attributes:
        vocab_size: ``V``, the number of token ids; ids are ``0 .. V-1``.
        eos_token_id: the id that ends a sequence, or None when sequences only end at a length limit.

    Every method is pure with respect to the state it is given: it returns a new
    state (which may share storage with the old one) and decoders never reuse a
    state after passing it on.
    """

    vocab_size: int
    eos_token_id: int | None

    def start(self, prompts: Sequence[Sequence[int]]) -> Any:
        """Return the state for ``B = len(prompts)`` rows conditioned on the prompts.

        Raises:
            EmptyPromptError: when the model needs context and a prompt is empty.
            VocabMismatchError: when a prompt token is outside ``0 .. V-1``.
        """
        ...

    def next_logprobs(self, state: Any) -> FloatArray:
        """Return ``(B, V)`` float64 normalised log-probabilities of the next token of each row."""
        ...

    def advance(self, state: Any, tokens: IntArray) -> Any:
        """Return the state after appending ``tokens`` (int64 ``(B,)``), one per row."""
        ...

    def select(self, state: Any, indices: IntArray) -> Any:
        """Return the state whose row ``i`` is row ``indices[i]`` of ``state`` (rows may repeat)."""
        ...


class ScoredBlock(Protocol):
    """What :meth:`BlockScoring.score_block` returns: a block of ``g`` tokens per row, scored."""

    def logits_at(self, i: int) -> Any:
        """``(B, V)`` next-token scores after the first ``i + 1`` tokens of the block, ``0 <= i < g``.

        The same scores :func:`model_logits` gives on the state advanced by those tokens (up to the
        float rounding of computing them in one pass), in the model's own array type and dtype.
        """
        ...

    def state(self, j: int) -> Any:
        """The model's state after the first ``j`` tokens of the block, ``1 <= j <= g`` (a new state)."""
        ...


@runtime_checkable
class BlockScoring(Protocol):
    """The optional block method of a :class:`LanguageModel`: score ``g`` tokens per row in one call.

    Models without it are scored one token at a time by :func:`score_block`; decoders never
    require it. A Hugging Face model runs one forward pass over the block with its KV cache (and
    crops the cache for :meth:`ScoredBlock.state`); an n-gram model looks the contexts up; a
    callable model calls its function once for the ``B * g`` prefixes.
    """

    def score_block(self, state: Any, tokens: IntArray) -> ScoredBlock:
        """Score int64 ``(B, g)`` tokens (``g >= 1``) appended to ``state``'s rows."""
        ...


@dataclass(frozen=True)
class _StepwiseBlock:
    """A block scored through the one-token protocol: ``states[j]`` is the state after ``j`` tokens."""

    model: LanguageModel
    states: list[Any]

    def logits_at(self, i: int) -> Any:
        return model_logits(self.model, self.states[i + 1])

    def state(self, j: int) -> Any:
        if not 1 <= j < len(self.states):
            raise ModelError(
                f"a block of {len(self.states) - 1} tokens has states 1..{len(self.states) - 1}, got {j}"
            )
        return self.states[j]


def check_block(tokens: Any, rows: int, vocab_size: int | None = None) -> IntArray:
    """``tokens`` as int64 ``(rows, g)`` with ``g >= 1`` and ids in ``0 .. vocab_size-1``.

    Raises:
        ModelError: the wrong shape. VocabMismatchError: an id outside the vocabulary.
    """
    toks = np.asarray(tokens, dtype=np.int64)
    if toks.ndim != 2 or toks.shape[0] != rows or toks.shape[1] < 1:
        raise ModelError(
            f"a block must be ({rows}, g) token ids with g >= 1 (one row per state row), got shape {toks.shape}"
        )
    if vocab_size is not None and (toks.min() < 0 or toks.max() >= vocab_size):
        bad = int(toks[(toks < 0) | (toks >= vocab_size)][0])
        raise VocabMismatchError(
            f"block token id {bad} is outside the model's vocabulary 0..{vocab_size - 1}; "
            "propose ids of this model's vocabulary"
        )
    return toks


def score_block(model: LanguageModel, state: Any, tokens: IntArray) -> ScoredBlock:
    """Score ``(B, g)`` tokens appended to ``state``: the model's own block pass, or ``g`` one-token steps.

    Args:
        model: any :class:`LanguageModel`; its ``score_block`` is used when it has one (:class:`BlockScoring`).
        state: the model's state for ``B`` rows.
        tokens: int64 ``(B, g)``, ``g >= 1``.

    Returns:
        A :class:`ScoredBlock`: ``logits_at(i)`` the ``(B, V)`` scores after ``i + 1`` tokens, ``state(j)``
        the state after ``j`` tokens.

    Raises:
        ModelError: a block of the wrong shape. VocabMismatchError: a token outside the vocabulary.

    Example::

        >>> from faithful.models import CallableModel
        >>> count = CallableModel(lambda prefixes: np.array([[len(p), 0.0] for p in prefixes]), vocab_size=2)
        >>> block = score_block(count, count.start([[1]]), np.array([[0, 1, 1]]))
        >>> [float(block.logits_at(i)[0, 0]) for i in range(3)]
        [2.0, 3.0, 4.0]
    """
    if isinstance(model, BlockScoring):
        return model.score_block(state, tokens)
    toks = np.asarray(tokens, dtype=np.int64)
    toks = check_block(toks, toks.shape[0] if toks.ndim == 2 else -1)  # advance checks the rows
    states = [state]
    for i in range(toks.shape[1]):
        states.append(model.advance(states[-1], toks[:, i]))
    return _StepwiseBlock(model, states)


def model_logits(model: LanguageModel, state: Any) -> Any:
    """The raw next-token scores a token sampler should see: ``next_logits`` if the model has it.

    Args:
        model: any :class:`LanguageModel`.
        state: its state for ``B`` rows.

    Returns:
        ``(B, V)`` scores whose softmax is the model's next-token distribution: the model's
        own logits (any float dtype; a torch tensor for a Hugging Face model, returned
        without a copy or a cast), or ``next_logprobs`` for models without logits.

    Example::

        >>> from faithful.models import CallableModel
        >>> m = CallableModel(lambda prefixes: np.array([[2.0, 0.0]] * len(prefixes)), vocab_size=2)
        >>> model_logits(m, m.start([[]])).tolist()
        [[2.0, 0.0]]
    """
    raw = getattr(model, "next_logits", None)
    return raw(state) if callable(raw) else model.next_logprobs(state)


def log_normalize(scores: npt.ArrayLike) -> FloatArray:
    """Log-softmax along the last axis in float64; rows of all ``-inf`` stay ``-inf``.

    Args:
        scores: ``(..., V)`` logits or unnormalised log-probabilities.

    Returns:
        ``(..., V)`` float64 log-probabilities whose ``exp`` sums to one per row.

    Example::

        >>> np.exp(log_normalize([0.0, 0.0])).tolist()
        [0.5, 0.5]
    """
    out: FloatArray = log_softmax(np.asarray(scores, dtype=np.float64), axis=-1)
    return out


def _token_ids(i: int, prompt: Sequence[int]) -> list[int]:
    # int() truncated a float id (1.5 became 1) and took True as 1, silently; operator.index takes
    # ints, numpy integers and integer 0-d tensors only
    out: list[int] = []
    for t in prompt:
        try:
            if isinstance(t, bool | np.bool_):
                raise TypeError
            out.append(operator.index(t))
        except TypeError:
            raise ModelError(f"prompt {i} must hold int token ids, got {list(prompt)[:8]}") from None
    return out


def as_prompts(prompts: Sequence[Sequence[int]], vocab_size: int) -> list[list[int]]:
    """Validate prompts as lists of token ids in ``0 .. vocab_size-1``.

    Raises:
        ModelError: when there are no prompts.
        VocabMismatchError: when a token id is out of range.
    """
    if isinstance(prompts, np.ndarray) and prompts.ndim == 1:
        raise ModelError(
            "prompts must be a batch (a sequence of token-id sequences), got a 1-D array; wrap it: [prompt]"
        )
    if isinstance(prompts, str) or any(isinstance(p, int | np.integer | str) for p in prompts):
        raise ModelError(
            "prompts must be a batch of token-id sequences, e.g. [[1, 2, 3]]; got a single sequence or text "
            "(wrap one prompt in a list; encode text with the model's tokenizer first)"
        )
    rows = [_token_ids(i, p) for i, p in enumerate(prompts)]
    if not rows:
        raise ModelError("expected at least one prompt, got an empty batch")
    for i, row in enumerate(rows):
        for t in row:
            if not 0 <= t < vocab_size:
                raise VocabMismatchError(
                    f"prompt {i} has token id {t}, outside the model's vocabulary 0..{vocab_size - 1}; "
                    "encode prompts with the model's own tokenizer/vocab"
                )
    return rows


def as_index_array(indices: npt.ArrayLike, size: int | None = None) -> IntArray:
    """Return ``indices`` as a 1-D int64 array, checking the range when ``size`` is given."""
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    if size is not None and idx.size and (idx.min() < 0 or idx.max() >= size):
        raise ModelError(f"row indices must be in 0..{size - 1}, got {idx.min()}..{idx.max()}")
    return idx
