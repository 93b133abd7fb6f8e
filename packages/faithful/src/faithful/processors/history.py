"""Processors that read the row's history or mask tokens: penalties, no-repeat-ngram, logit bias, allowed/forbidden tokens."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from faithful.processors._base import (
    History,
    Processor,
    _check_ids_in_vocab,
    _check_nonempty,
    _history_matrix,
    _keep,
)


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

    def __call__(self, logits: np.ndarray, history: History | None = None) -> np.ndarray:
        rows, tokens = _history_matrix(history, logits.shape, "presence/frequency penalty")
        b, v = logits.shape
        counts = np.bincount(rows * v + tokens, minlength=b * v).reshape(b, v).astype(np.float64)
        out: np.ndarray = logits - float(self.presence) * (counts > 0) - float(self.frequency) * counts
        return out


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

    def __call__(self, logits: np.ndarray, history: History | None = None) -> np.ndarray:
        ids = np.asarray(self.tokens, dtype=np.int64)
        _check_ids_in_vocab("forbidden_tokens", ids, logits.shape[1])
        out = logits.copy()
        out[:, ids] = -np.inf
        _check_nonempty(out, "forbidden_tokens")
        return out
