"""The rounds of :func:`faithful.decode.speculative.speculative_sample`: groups of rows, their states, the verdict.

Split from :mod:`faithful.decode.speculative` (which documents the algorithm and the keys) to keep
each module small; nothing here is public.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from faithful.decode._common import (
    PAD,
    DecodeResult,
    log_softmax_at,
    reads_history,
    resolve_rng,
    scores_array,
    start_expanded,
)
from faithful.decode.speculative import AcceptRule, SpeculativeResult
from faithful.draw import inverse_cdf
from faithful.models.base import FloatArray, IntArray, LanguageModel, ScoredBlock, model_logits, score_block
from faithful.samplers import Sampler


class _LaneShift:
    """A uniform source whose lane ``j`` is lane ``first + j`` of ``source``: disjoint lanes, same keys."""

    def __init__(self, source: Any, first: int) -> None:
        self.source = source
        self.first = int(first)
        self.seed = getattr(source, "seed", None)

    def uniforms(self, rows: Any, step: int, n: int = 1) -> np.ndarray:
        out: np.ndarray = self.source.uniforms(rows, step, self.first + n)[:, self.first :]
        return out


def _lanes(sampler: Sampler, vocab_size: int) -> int:
    """How many lanes a sampler call reads: its draw's (Gumbel: one per token) and one per XTC coin."""
    draw = vocab_size if sampler.draw == "gumbel" else 1
    return draw + sum(1 for p in sampler.processors if p.stochastic)


def _join_states(model: LanguageModel, states: list[Any], prompts: list[list[int]], tokens: IntArray) -> Any:
    """One state holding the rows of ``states`` in order; ``prompts`` and ``tokens`` (``(R, p)``) are theirs.

    The model protocol has no concatenation, so: a model's own ``concat_states(states)`` when it
    offers one and it does not return None (a Hugging Face model left-pads its KV caches); n-gram and callable-model states, which are plain per-row data, joined directly;
    any other model started on the rows' prompts and advanced along their ``p`` tokens, batched:
    the path that built the states it replaces (restarting on prompt + tokens would not be: a
    causal LM starts an empty prompt from its BOS token, and a non-empty one without it).
    """
    from faithful.models.callable import PrefixState
    from faithful.models.ngram import NGramState

    own = getattr(model, "concat_states", None)
    joined = own(states) if callable(own) else None  # None: this model cannot join these states
    if joined is not None:
        return joined
    if all(isinstance(s, NGramState) for s in states):
        return NGramState(tuple(c for s in states for c in s.contexts))
    if all(isinstance(s, PrefixState) for s in states):
        return PrefixState(tuple(p for s in states for p in s.prefixes))
    state = model.start(prompts)
    for i in range(tokens.shape[1]):
        state = model.advance(state, tokens[:, i])
    return state


_ROUND_BYTES = 1 << 28


@dataclass
class _Group:
    """Rows at the same committed length whose draft and target states were advanced together."""

    rows: IntArray  # global row ids
    pos: int
    draft: Any
    target: Any
    # the token at pos - 1, committed but not yet fed to the target: the next round's block pass
    # feeds it with the proposals (None at the start, where the target's state is at pos)
    pending: IntArray | None = None


class _Run:
    """One speculative decode: the per-row buffers and the rounds over groups of rows."""

    def __init__(
        self,
        target: LanguageModel,
        draft: LanguageModel,
        prompts: Sequence[Sequence[int]],
        max_new_tokens: int,
        gamma: int,
        t_sampler: Sampler | None,
        d_sampler: Sampler,
        copies: int,
        rng: Any,
        rule: AcceptRule,
    ) -> None:
        self.target, self.draft, self.gamma, self.rule = target, draft, gamma, rule
        self.t_sampler, self.d_sampler = t_sampler, d_sampler
        self.limit = max_new_tokens
        self.source: Any = resolve_rng(rng)
        v = target.vocab_size
        d_lanes = _lanes(d_sampler, v)
        t_lanes = 0 if t_sampler is None else _lanes(t_sampler, v)
        self.t_source = _LaneShift(self.source, d_lanes)
        self.accept_lane = d_lanes + t_lanes
        # a round holds 2 * gamma + 2 float64 (rows, V) arrays (the draft's and target's q, the logits):
        # rows per round are capped so that they stay within _ROUND_BYTES whatever the vocabulary
        self.max_rows = max(1, _ROUND_BYTES // (8 * v * (2 * gamma + 2)))
        self.needs_history = reads_history(d_sampler) or (t_sampler is not None and reads_history(t_sampler))
        t_state, b = start_expanded(target, prompts, copies)
        d_state, _ = start_expanded(draft, prompts, copies)
        self.b, self.copies = b, copies
        n = b * copies
        self.prompt_rows = [np.asarray(list(prompts[i // copies]), dtype=np.int64) for i in range(n)]
        self.tokens = np.full((n, max_new_tokens), PAD, dtype=np.int64)
        self.tlp = np.zeros((n, max_new_tokens))
        self.qlp = np.zeros(n)
        self.lengths = np.zeros(n, dtype=np.int64)
        self.finished = np.zeros(n, dtype=bool)
        self.counts = dict.fromkeys(
            ("proposed", "tested", "accepted", "residual", "bonus", "target_passes", "draft_steps"), 0
        )
        # groups waiting for their next round, by position: the lowest position goes first, so rows
        # that reach a position from different rounds meet there and go on as one batch
        self.todo: dict[int, list[_Group]] = {0: [_Group(np.arange(n, dtype=np.int64), 0, d_state, t_state)]}

    def _history(self, rows: IntArray, pos: int, drafted: list[IntArray]) -> Any:
        if not self.needs_history:
            return None
        return [
            np.concatenate([self.prompt_rows[r], self.tokens[r, :pos], [int(x[i]) for x in drafted]]).astype(
                np.int64
            )
            for i, r in enumerate(rows)
        ]

    def run(self, mode: str) -> SpeculativeResult:
        while self.todo:
            for batch in self._batches(self.todo.pop(min(self.todo))):
                self._round(batch)
        width = max(1, int(self.lengths.max()))
        logprobs = self.tlp.sum(axis=1)
        shape = (self.b, self.copies)
        result = DecodeResult(
            tokens=self.tokens[:, :width].reshape(*shape, width),
            lengths=self.lengths.reshape(shape),
            logprobs=logprobs.reshape(shape),
            token_logprobs=self.tlp[:, :width].reshape(*shape, width),
            scores=logprobs.reshape(shape).copy(),
            finished=self.finished.reshape(shape),
            proposal_logprobs=None if mode == "greedy" else self.qlp.reshape(shape),
        )
        return SpeculativeResult(
            result=result, mode=mode, gamma=self.gamma, tokens=int(self.lengths.sum()), rule=self.rule.name,
            **self.counts,
        )  # fmt: skip

    def _target_q(self, z: np.ndarray, rows: IntArray, step: int, hist: Any) -> FloatArray:
        if self.t_sampler is None:  # greedy verification: the argmax, lowest id on ties
            q = np.zeros(z.shape, dtype=np.float64)
            q[np.arange(z.shape[0]), np.argmax(z, axis=1)] = 1.0
            return q
        out: FloatArray = np.asarray(
            self.t_sampler.distribution(z, history=hist, rows=rows, rng=self.t_source, step=step),
            dtype=np.float64,
        )
        return out

    def _round(self, g: _Group) -> None:
        rows, p, m = g.rows, g.pos, len(g.rows)
        k = min(self.gamma, self.limit - p - 1)  # k proposals, then one more token: at most the limit
        # the draft proposes k tokens from its processed q
        d_states: list[Any] = [g.draft]
        xs: list[IntArray] = []
        qds: list[FloatArray] = []
        for i in range(k):
            if i > 0:
                d_states.append(self.draft.advance(d_states[i - 1], xs[i - 1]))
            z = scores_array(model_logits(self.draft, d_states[i]))
            res = self.d_sampler(
                z, rng=self.source, step=p + i, rows=rows, history=self._history(rows, p, xs), return_q=True
            )
            assert res.q is not None
            xs.append(np.asarray(res.tokens, dtype=np.int64))
            qds.append(np.asarray(res.q, dtype=np.float64))
        self.counts["proposed"] += m * k
        self.counts["draft_steps"] += m * k
        self.counts["target_passes"] += m
        # the target scores the k+1 positions in one block call: the pending token (the last one
        # committed, not yet fed) and the k proposals; a model without a block method is stepped
        fed = ([] if g.pending is None else [g.pending]) + xs
        block = score_block(self.target, g.target, np.stack(fed, axis=1)) if fed else None
        first = 0 if g.pending is None else 1  # block index of the state at position p
        zs: list[np.ndarray] = []
        qts: list[FloatArray] = []
        for i in range(k + 1):
            at = first + i  # tokens of the block fed before position p + i
            raw = model_logits(self.target, g.target) if at == 0 else block.logits_at(at - 1)  # type: ignore[union-attr]
            z = scores_array(raw)
            zs.append(z)
            qts.append(self._target_q(z, rows, p + i, self._history(rows, p, xs[:i])))
        t_states = _BlockStates(g.target, block, first)
        self._verify(g, k, xs, qds, zs, qts, d_states, t_states)

    def _verify(
        self,
        g: _Group,
        k: int,
        xs: list[IntArray],
        qds: list[FloatArray],
        zs: list[np.ndarray],
        qts: list[FloatArray],
        d_states: list[Any],
        t_states: _BlockStates,
    ) -> None:
        rows, p, m = g.rows, g.pos, len(g.rows)
        eos = self.target.eos_token_id
        r = np.arange(m)
        kept = np.zeros(m, dtype=np.int64)  # accepted proposals per row
        decided = np.zeros(m, dtype=bool)  # the round is over for the row (rejected, or EOS accepted)
        ended = np.zeros(m, dtype=bool)  # the row's sequence is over (EOS committed)
        last = np.full(m, -1, dtype=np.int64)  # the token after the accepted ones (-1: none)
        for i in range(k + 1):
            live = ~decided
            if not live.any():
                break
            lanes = self.source.uniforms(rows[live], p + i, self.accept_lane + 2)
            u_accept, u_draw = lanes[:, self.accept_lane], lanes[:, self.accept_lane + 1]
            li = np.flatnonzero(live)
            qt = qts[i][li]
            if i == k:  # every proposal accepted: a bonus token from the target
                w = qt
                self.counts["bonus"] += len(li)
                take = np.ones(len(li), dtype=bool)
            else:
                x = xs[i][li]
                self.counts["tested"] += len(li)
                ok = np.asarray(self.rule.accept(u_accept, qds[i][li, x], qt[r[: len(li)], x]), dtype=bool)
                acc = li[ok]
                self.counts["accepted"] += len(acc)
                self._commit(rows[acc], p + i, x[ok], zs[i][acc], qts[i][acc])
                kept[acc] += 1
                if eos is not None:
                    stop = acc[x[ok] == eos]
                    ended[stop] = decided[stop] = True
                take = ~ok
                w = self.rule.residual(qt[take], qds[i][li[take]])
                self.counts["residual"] += int(take.sum())
            if take.any():
                ti = li[take]
                w = np.asarray(w, dtype=np.float64)
                # an empty residual is float cancellation only: the exact one has mass when x is rejected
                empty = w.max(axis=1) <= 0
                if empty.any():
                    w[empty] = qts[i][ti[empty]]
                y = inverse_cdf(w, u_draw[take])
                self._commit(rows[ti], p + i, y, zs[i][ti], qts[i][ti])
                last[ti] = y
                decided[ti] = True
                if eos is not None:
                    ended[ti[y == eos]] = True
        self.finished[rows[ended]] = True
        self._regroup(g, kept, last, ended, d_states, t_states, xs)

    def _batches(self, groups: list[_Group]) -> list[_Group]:
        """The groups at one position as batches of at most ``max_rows`` rows: merged, or split when larger."""
        cap = self.max_rows
        pieces: list[_Group] = []
        for g in groups:
            if len(g.rows) <= cap:
                pieces.append(g)
                continue
            for lo in range(0, len(g.rows), cap):
                idx = np.arange(lo, min(lo + cap, len(g.rows)), dtype=np.int64)
                pieces.append(
                    _Group(
                        g.rows[idx],
                        g.pos,
                        self.draft.select(g.draft, idx),
                        self.target.select(g.target, idx),
                        None if g.pending is None else g.pending[idx],
                    )
                )
        out: list[_Group] = []
        bin_: list[_Group] = []
        for piece in pieces:
            if bin_ and sum(len(b.rows) for b in bin_) + len(piece.rows) > cap:
                out.append(bin_[0] if len(bin_) == 1 else self._merge(bin_))
                bin_ = []
            bin_.append(piece)
        if bin_:
            out.append(bin_[0] if len(bin_) == 1 else self._merge(bin_))
        return out

    def _merge(self, groups: list[_Group]) -> _Group:
        """Groups at one position as one: their rows' states joined (see :func:`_join_states`)."""
        rows = np.concatenate([g.rows for g in groups])
        pos = groups[0].pos
        prompts = [self.prompt_rows[r].tolist() for r in rows]
        done = self.tokens[rows, :pos]
        pending = [g.pending for g in groups]
        if all(p is None for p in pending):  # the first round's pieces: the targets are at pos
            fed, joined_pending = done, None
        elif any(p is None for p in pending):  # never: only the first round's groups have none
            raise AssertionError("groups at one position either all have a pending token or none")
        else:  # the target's states are at pos - 1: the pending token is not fed yet
            fed, joined_pending = done[:, : pos - 1], np.concatenate([p for p in pending if p is not None])
        return _Group(
            rows,
            pos,
            _join_states(self.draft, [g.draft for g in groups], prompts, done),
            _join_states(self.target, [g.target for g in groups], prompts, fed),
            joined_pending,
        )

    def _commit(self, rows: IntArray, pos: int, tokens: IntArray, z: np.ndarray, q: FloatArray) -> None:
        if len(rows) == 0:
            return
        self.tokens[rows, pos] = tokens
        self.tlp[rows, pos] = log_softmax_at(z, tokens)
        with np.errstate(divide="ignore"):
            self.qlp[rows] += np.log(q[np.arange(len(rows)), tokens])
        self.lengths[rows] = pos + 1

    def _regroup(
        self,
        g: _Group,
        kept: IntArray,
        last: IntArray,
        ended: np.ndarray,
        d_states: list[Any],
        t_states: _BlockStates,
        xs: list[IntArray],
    ) -> None:
        """Rows that go on form new groups by how many proposals they kept; each gets its own states."""
        go_on = ~ended & (last >= 0) & (g.pos + kept + 1 < self.limit)
        for j_ in np.unique(kept[go_on]):
            j = int(j_)
            idx = np.flatnonzero(go_on & (kept == j)).astype(np.int64)
            full = len(idx) == len(g.rows)  # no select needed: the group goes on as one
            t_state = t_states.at(j) if full else self.target.select(t_states.at(j), idx)
            if j < len(d_states):
                d_state = d_states[j] if full else self.draft.select(d_states[j], idx)
            else:  # the draft's state after all its proposals: only needed now
                d_state = self.draft.advance(
                    d_states[-1] if full else self.draft.select(d_states[-1], idx), xs[-1][idx]
                )
                self.counts["draft_steps"] += len(idx)
            y = last[idx]
            # y is fed to the target by the next round's block pass, with the next proposals
            self.todo.setdefault(g.pos + j + 1, []).append(
                _Group(g.rows[idx], g.pos + j + 1, self.draft.advance(d_state, y), t_state, y)
            )


@dataclass
class _BlockStates:
    """The target's states along a round's block: ``at(j)`` is the state after ``j`` accepted proposals.

    Built lazily from the block (a Hugging Face model crops its cache), and each at most once.
    """

    start: Any  # the group's target state
    block: ScoredBlock | None
    first: int  # 1 when the block begins with the pending token, else 0

    def at(self, j: int) -> Any:
        n = self.first + j  # tokens of the block fed
        if n == 0:
            return self.start
        assert self.block is not None
        return self.block.state(n)
