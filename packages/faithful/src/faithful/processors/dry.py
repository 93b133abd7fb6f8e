"""DRY ("don't repeat yourself"): a penalty on tokens that would extend a repeated sequence.

As llama.cpp defines it (``src/llama-sampling.cpp``, ``llama_sampler_dry_apply``,
ported there from koboldcpp PR 982): if the last ``n`` tokens of the history
also occur earlier, followed by token ``t``, then emitting ``t`` would extend a
repetition of length ``n``; when ``n >= allowed_length`` the logit of ``t`` is
lowered by ``multiplier * base ** (n - allowed_length)`` (``n`` the longest such
repetition for ``t``). Sequence breakers (token sequences, e.g. the tokens of a
newline) cut repetitions: no repetition may reach back across the most recent
breaker, and a single-token breaker is never penalised.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from faithful.processors._base import History, Processor, _history_matrix

# llama.cpp clamps the exponent so that base ** exponent stays below float32's max (log(FLT_MAX)).
_FLOAT_MAX_LOG = 88.7228391


def _z_function(seq: Sequence[int]) -> list[int]:
    """``z[k]``: the length of the longest common prefix of ``seq`` and ``seq[k:]`` (``z[0] = 0``)."""
    n = len(seq)
    z = [0] * n
    left = right = 0
    for k in range(1, n):
        if k < right:
            z[k] = min(right - k, z[k - left])
        while k + z[k] < n and seq[z[k]] == seq[k + z[k]]:
            z[k] += 1
        if k + z[k] > right:
            left, right = k, k + z[k]
    return z


@dataclass(frozen=True)
class DRY(Processor):
    """DRY repetition penalty (llama.cpp's ``dry``), per row on the row's history.

    Parameters (validated by the processor table):
        multiplier: ``>= 0``; 0 turns DRY off (llama.cpp's default).
        base: ``>= 1``; the penalty grows as ``base ** (length - allowed_length)``.
        allowed_length: int ``>= 0``; repetitions shorter than this are free.
        penalty_last_n: int; how many of the most recent history tokens are scanned:
            ``-1`` all of them, ``0`` DRY off.
        sequence_breakers: token sequences (each non-empty); no repetition reaches back
            across the most recent one in the window, and single-token breakers are never
            penalised. llama.cpp takes strings and tokenizes them with the model's
            vocabulary; here they are token ids.

    Differences from llama.cpp: the penalty is computed in float64 (llama.cpp: float32),
    and llama.cpp's extra cap of the window at the context size does not apply
    (faithful's history is what the caller passes).

    Example:
        >>> z = np.zeros((1, 4))
        >>> DRY(1.0, 1.1, 2, -1)(z, [[0, 1, 2, 0, 1]]).round(6).tolist()
        [[0.0, 0.0, -1.0, 0.0]]
    """

    multiplier: float
    base: float = 1.75
    allowed_length: int = 2
    penalty_last_n: int = -1
    sequence_breakers: Sequence[Sequence[int]] = ()
    name: ClassVar[str] = "dry"
    needs_history: ClassVar[bool] = True

    def penalties(self, history: Sequence[int]) -> dict[int, float]:
        """``{token: amount subtracted from its logit}`` for one row's history."""
        n_last = int(self.penalty_last_n)
        if self.multiplier == 0 or n_last == 0:
            return {}
        window = [int(t) for t in history]
        if n_last > 0:
            window = window[-n_last:]
        size = len(window)
        allowed = int(self.allowed_length)
        if size <= allowed:
            return {}
        recent = window[::-1]  # recent[i]: the token i places from the end
        limit = self._repetition_limit(recent)
        if limit < allowed:
            return {}
        # z[k]: how many of the last tokens also end k places earlier, i.e. the length of
        # the repetition that the token recent[k - 1] (which followed it there) would extend.
        z = _z_function(recent)
        longest: dict[int, int] = {}
        for k in range(1, size):
            length = min(z[k], limit)
            if length >= allowed:
                token = recent[k - 1]
                longest[token] = max(longest.get(token, 0), length)
        single_breakers = {int(b[0]) for b in self.sequence_breakers if len(b) == 1}
        base = float(self.base)
        max_exponent = int(_FLOAT_MAX_LOG / math.log(base)) if base > 1.000001 else 0
        out: dict[int, float] = {}
        for token, length in longest.items():
            if token in single_breakers:
                continue
            exponent = length - allowed
            if max_exponent > 0:
                exponent = min(exponent, max_exponent)
            out[token] = float(self.multiplier) * base**exponent
        return out

    def _repetition_limit(self, recent: list[int]) -> int:
        """The longest repetition allowed: it may not reach back across the most recent breaker."""
        heads: dict[int, list[list[int]]] = {}
        for b in self.sequence_breakers:
            heads.setdefault(int(b[0]), []).append([int(t) for t in b[1:]])
        for i, token in enumerate(recent):
            longest = -1
            for tail in heads.get(token, ()):
                # the breaker starts i places from the end and its tail follows it
                if longest < len(tail) <= i and all(tail[j] == recent[i - j - 1] for j in range(len(tail))):
                    longest = len(tail)
            if longest >= 0:
                return i - longest
        return len(recent)

    def __call__(self, logits: np.ndarray, history: History | None = None) -> np.ndarray:
        _history_matrix(history, logits.shape, self.name)  # validates shape and ids
        assert history is not None
        out = logits.copy()
        for row, seq in enumerate(history):
            for token, amount in self.penalties(seq).items():
                out[row, token] -= amount
        return out
