"""An n-gram language model trained from text, character or word level, with Witten-Bell smoothing."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from faithful.models.base import (
    FloatArray,
    IntArray,
    ModelError,
    VocabMismatchError,
    as_index_array,
    as_prompts,
    check_block,
)

__all__ = ["EOS", "UNK", "NGramBlock", "NGramModel", "NGramState", "Vocab"]

EOS = "<eos>"
UNK = "<unk>"
BOS = "<bos>"
Level = Literal["char", "word"]
_WORD = re.compile(r"\S+")


class Vocab:
    """A simple tokenizer: characters or whitespace-separated words <-> ids.

    Ids 0, 1 and 2 are ``<eos>``, ``<unk>`` and ``<bos>``; the rest follow in the
    order given. ``<bos>`` only pads the context before the first token and is
    never generated.

    Args:
        symbols: the ordinary tokens (characters or words), without the specials.
        level: ``"char"`` (decode joins with "") or ``"word"`` (decode joins with " ").

    Example::

        >>> v = Vocab(["a", "b"], level="char")
        >>> v.encode("abz"), v.decode(v.encode("ab") + [v.eos_id])
        ([3, 4, 1], 'ab')
    """

    def __init__(self, symbols: Iterable[str], level: Level = "char") -> None:
        if level not in ("char", "word"):
            raise ModelError(f"level must be 'char' or 'word', got {level!r}")
        self.level: Level = level
        self.tokens: list[str] = [EOS, UNK, BOS]
        seen = set(self.tokens)
        for s in symbols:
            if s not in seen:
                seen.add(s)
                self.tokens.append(s)
        self.index = {t: i for i, t in enumerate(self.tokens)}
        self.eos_id, self.unk_id, self.bos_id = 0, 1, 2

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def vocab_size(self) -> int:
        """The number of ids, specials included."""
        return len(self.tokens)

    def split(self, text: str) -> list[str]:
        """Split text into symbols (characters, or whitespace-separated words)."""
        return list(text) if self.level == "char" else _WORD.findall(text)

    def encode(self, text: str) -> list[int]:
        """Return the ids of ``text``; unknown symbols map to ``<unk>``."""
        return [self.index.get(s, self.unk_id) for s in self.split(text)]

    def decode(self, ids: Iterable[int]) -> str:
        """Return the text of ``ids``, dropping ``<eos>``/``<bos>`` and writing ``<unk>`` as ``\\ufffd``.

        Raises:
            VocabMismatchError: when an id is outside the vocabulary.
        """
        out: list[str] = []
        for i in ids:
            i = int(i)
            if not 0 <= i < len(self.tokens):
                raise VocabMismatchError(f"token id {i} is outside this vocabulary 0..{len(self.tokens) - 1}")
            if i in (self.eos_id, self.bos_id):
                continue
            out.append("\ufffd" if i == self.unk_id else self.tokens[i])
        return ("" if self.level == "char" else " ").join(out)


@dataclass(frozen=True)
class NGramState:
    """State of an :class:`NGramModel`: the last ``n - 1`` ids of each row (``<bos>``-padded)."""

    contexts: tuple[tuple[int, ...], ...]


@dataclass(frozen=True)
class NGramBlock:
    """A block of tokens scored by :meth:`NGramModel.score_block`: ``(B, g, V)`` log-probabilities and contexts."""

    logprobs: FloatArray
    contexts: tuple[tuple[tuple[int, ...], ...], ...]  # [j - 1]: every row's context after j tokens

    def logits_at(self, i: int) -> FloatArray:
        """``(B, V)`` log-probabilities after ``i + 1`` tokens of the block."""
        out: FloatArray = self.logprobs[:, i]
        return out

    def state(self, j: int) -> NGramState:
        """The state after ``j`` tokens of the block, ``1 <= j <= g``."""
        if not 1 <= j <= len(self.contexts):
            raise ModelError(
                f"a block of {len(self.contexts)} tokens has states 1..{len(self.contexts)}, got {j}"
            )
        return NGramState(self.contexts[j - 1])


class NGramModel:
    """An interpolated Witten-Bell n-gram model over a :class:`Vocab`; a :class:`LanguageModel`.

    ``P(w | h) = (c(h, w) + T(h) P(w | h')) / (c(h) + T(h))`` where ``T(h)`` is the
    number of distinct tokens seen after ``h`` and ``h'`` drops the oldest token;
    the recursion ends in the uniform distribution over every id except
    ``<bos>``. Every generatable token therefore has positive probability and
    each row sums to one exactly (up to float64 rounding). With
    ``smoothing="add-k"`` the highest order alone is used: ``(c(h, w) + k) / (c(h) + k V')``.

    Each non-empty line of the training text is one sequence ending in ``<eos>``.

    Example::

        >>> m = NGramModel.from_text("abab\\nabba\\n", n=2, level="char")
        >>> ids = m.vocab.encode("a")
        >>> probs = np.exp(m.next_logprobs(m.start([ids])))[0]
        >>> bool(probs[m.vocab.index["b"]] > 0.5)
        True
    """

    def __init__(
        self,
        vocab: Vocab,
        n: int,
        sequences: Iterable[Sequence[int]],
        *,
        smoothing: Literal["witten-bell", "add-k"] = "witten-bell",
        k: float = 1.0,
    ) -> None:
        if n < 1:
            raise ModelError(f"n must be >= 1, got {n}")
        if smoothing not in ("witten-bell", "add-k"):
            raise ModelError(f"smoothing must be 'witten-bell' or 'add-k', got {smoothing!r}")
        if smoothing == "add-k" and not k > 0:
            raise ModelError(f"k must be > 0 for add-k smoothing, got {k}")
        self.vocab = vocab
        self.n = n
        self.smoothing = smoothing
        self.k = float(k)
        self.vocab_size = vocab.vocab_size
        self.eos_token_id: int | None = vocab.eos_id
        counts: dict[tuple[int, ...], Counter[int]] = defaultdict(Counter)
        for seq in sequences:
            ids = [vocab.bos_id] * (n - 1) + [int(t) for t in seq] + [vocab.eos_id]
            for pos in range(n - 1, len(ids)):
                for order in range(n):
                    counts[tuple(ids[pos - order : pos])][ids[pos]] += 1
        self._counts = dict(counts)
        self._cache: dict[tuple[int, ...], FloatArray] = {}
        base = np.ones(self.vocab_size)
        base[vocab.bos_id] = 0.0
        self._base = base / base.sum()

    @classmethod
    def from_text(
        cls,
        text: str,
        n: int,
        level: Level = "char",
        *,
        smoothing: Literal["witten-bell", "add-k"] = "witten-bell",
        k: float = 1.0,
    ) -> NGramModel:
        """Build the vocabulary from ``text`` and train on its non-empty lines.

        Args:
            text: training text; each non-empty line is one sequence ending in ``<eos>``.
            n: the order (1 = unigram).
            level: ``"char"`` or ``"word"`` tokens.
            smoothing: ``"witten-bell"`` (interpolated, default) or ``"add-k"``.
            k: the pseudo-count of add-k smoothing.

        Raises:
            ModelError: when ``text`` has no tokens, or ``n``/``level``/``smoothing`` is invalid.

        Example::

            >>> NGramModel.from_text("the cat\\nthe dog\\n", n=2, level="word").vocab.tokens[3:]
            ['the', 'cat', 'dog']
        """
        probe = Vocab([], level)
        lines = [probe.split(line) for line in text.splitlines()]
        lines = [line for line in lines if line]
        if not lines:
            raise ModelError("the training text has no tokens; pass text with at least one non-empty line")
        symbols = sorted({s for line in lines for s in line}) if level == "char" else _first_seen(lines)
        vocab = Vocab(symbols, level)
        seqs = [[vocab.index[s] for s in line] for line in lines]
        return cls(vocab, n, seqs, smoothing=smoothing, k=k)

    def _probs(self, context: tuple[int, ...]) -> FloatArray:
        cached = self._cache.get(context)
        if cached is not None:
            return cached
        if self.smoothing == "add-k":
            c = self._dense(self._counts.get(context))
            generatable = self._base > 0
            p: FloatArray = np.where(generatable, c + self.k, 0.0)
            p = p / p.sum()
        else:
            p = self._base
            for order in range(self.n):
                ctx = context[len(context) - order :] if order else ()
                table = self._counts.get(ctx)
                if table is None:
                    continue
                c = self._dense(table)
                types = float(len(table))
                p = (c + types * p) / (c.sum() + types)
        self._cache[context] = p
        return p

    def _dense(self, table: Counter[int] | None) -> FloatArray:
        c = np.zeros(self.vocab_size)
        if table:
            c[list(table.keys())] = list(table.values())
        return c

    def start(self, prompts: Sequence[Sequence[int]]) -> NGramState:
        """Return the state after the prompts (an empty prompt means start of sequence)."""
        rows = as_prompts(prompts, self.vocab_size)
        pad = [self.vocab.bos_id] * (self.n - 1)
        return NGramState(tuple(tuple((pad + r)[len(pad + r) - (self.n - 1) :]) for r in rows))

    def next_logprobs(self, state: NGramState) -> FloatArray:
        """Return ``(B, V)`` float64 log-probabilities; ``<bos>`` is ``-inf``."""
        probs = np.stack([self._probs(c) for c in state.contexts])
        with np.errstate(divide="ignore"):
            out: FloatArray = np.log(probs)
        return out

    def advance(self, state: NGramState, tokens: IntArray) -> NGramState:
        """Append one token per row and keep the last ``n - 1``."""
        toks = as_index_array(tokens, self.vocab_size)
        if toks.shape[0] != len(state.contexts):
            raise ModelError(f"expected {len(state.contexts)} tokens (one per row), got {toks.shape[0]}")
        keep = self.n - 1
        return NGramState(
            tuple(
                ((*c, int(t))[len(c) + 1 - keep :] if keep else ())
                for c, t in zip(state.contexts, toks, strict=True)
            )
        )

    def score_block(self, state: NGramState, tokens: IntArray) -> NGramBlock:
        """Log-probabilities after each of ``g`` tokens per row (``tokens`` int64 ``(B, g)``), in one lookup.

        The numbers are the ones ``advance`` then ``next_logprobs`` give, bit for bit (the same
        cached rows, one ``log``); no intermediate state is built.
        """
        toks = check_block(tokens, len(state.contexts), self.vocab_size)
        keep = self.n - 1
        steps: list[tuple[tuple[int, ...], ...]] = []
        rows = state.contexts
        for i in range(toks.shape[1]):
            rows = tuple(
                ((*c, int(t))[len(c) + 1 - keep :] if keep else ())
                for c, t in zip(rows, toks[:, i], strict=True)
            )
            steps.append(rows)
        b, g = toks.shape
        probs = np.stack([self._probs(steps[i][r]) for r in range(b) for i in range(g)])
        with np.errstate(divide="ignore"):
            logprobs: FloatArray = np.log(probs).reshape(b, g, self.vocab_size)
        return NGramBlock(logprobs, tuple(steps))

    def select(self, state: NGramState, indices: IntArray) -> NGramState:
        """Reorder/repeat rows."""
        idx = as_index_array(indices, len(state.contexts))
        return NGramState(tuple(state.contexts[int(i)] for i in idx))


def _first_seen(lines: list[list[str]]) -> list[str]:
    seen: dict[str, None] = {}
    for line in lines:
        for s in line:
            seen.setdefault(s, None)
    return list(seen)
