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

Example::

    >>> import numpy as np
    >>> from faithful.models import CallableModel
    >>> uniform = CallableModel(lambda prefixes: np.zeros((len(prefixes), 3)), vocab_size=3)
    >>> state = uniform.start([[0], [1, 2]])
    >>> np.exp(uniform.next_logprobs(state)).round(3).tolist()
    [[0.333, 0.333, 0.333], [0.333, 0.333, 0.333]]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from faithful._numeric import log_softmax
from faithful.errors import FaithfulError

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

__all__ = [
    "EmptyPromptError",
    "FloatArray",
    "IntArray",
    "LanguageModel",
    "ModelError",
    "VocabMismatchError",
    "as_index_array",
    "as_prompts",
    "log_normalize",
    "model_logits",
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
    rows = [[int(t) for t in p] for p in prompts]
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
