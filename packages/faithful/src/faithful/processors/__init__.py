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

from collections.abc import Sequence

import numpy as np

from faithful.processors._base import History, Processor, check_logits, log_softmax, softmax
from faithful.processors.history import (
    AllowedTokens,
    ForbiddenTokens,
    LogitBias,
    NoRepeatNGram,
    OccurrencePenalty,
    RepetitionPenalty,
)
from faithful.processors.truncation import (
    Epsilon,
    Eta,
    MinP,
    Temperature,
    TopK,
    TopNSigma,
    TopP,
    Typical,
)
from faithful.selection import top_p_threshold

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


def apply_processors(
    logits: np.ndarray, processors: Sequence[Processor], history: History | None = None
) -> np.ndarray:
    """Apply ``processors`` in the given order to validated float64 ``(B, V)`` logits.

    Returns a new array even when ``processors`` is empty; ``logits`` is not modified.

    Raises:
        EmptySupportError: a mask left a row with no token.

    Example:
        >>> apply_processors(np.array([[1.0, 2.0]]), [Temperature(2.0)]).tolist()
        [[-0.5, 0.0]]
    """
    z = logits.copy() if not processors else logits
    # A penalty that overflows a very negative logit to -inf is the right limit (probability 0);
    # overflow to +inf is caught by the sampler's check of the result.
    with np.errstate(over="ignore"):
        for proc in processors:
            z = proc(z, history)
    return z
