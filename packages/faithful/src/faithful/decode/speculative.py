"""Exact speculative decoding: a cheap draft model proposes, the target model verifies.

Speculative sampling (Leviathan et al. 2023, "Fast Inference from Transformers via Speculative
Decoding"; Chen et al. 2023, "Accelerating Large Language Model Decoding with Speculative
Sampling"): per round the draft proposes ``gamma`` tokens ``x_i ~ q_draft``; the target scores all
of them in one pass; ``x_i`` is accepted with probability ``min(1, q_target(x_i) / q_draft(x_i))``;
at the first rejection a token is drawn from the residual ``norm(max(0, q_target - q_draft))`` and
the round ends; when all ``gamma`` are accepted one bonus token is drawn from ``q_target``. Every
committed token is then an exact draw from ``q_target`` given the committed prefix.

**What is exact.** ``q_draft`` and ``q_target`` are the *processed* distributions: the sampler
(temperature, top-k, top-p, penalties, ...) applied to each model's logits. The argument above
holds for any two distributions, so the output is an exact sample of the target *under the
sampler* (for ``sampler=None``, of the target model itself), whatever the draft and its
sampler are; the draft's quality only moves the acceptance rate. Applying the sampler to the
target alone would be exact as well; applying it to the draft too keeps the two close.

**Keyed randomness.** Every uniform is keyed by ``(seed, row, step, lane)`` where ``step`` is the
position of the token in the output (0 = the first generated token) and ``row = b * K + k`` as in
:func:`~faithful.decode.ancestral_sample`. At each position the lanes are laid out as:

- ``[0, Ld)``: the draft sampler's own lanes (its draw and its XTC coins), so a proposal at
  position ``t`` is the draft's ancestral draw at step ``t`` given the same prefix;
- ``[Ld, Ld + Lt)``: the target sampler's stochastic processors (XTC coins), shifted past the draft's;
- ``Ld + Lt``: the accept test; ``Ld + Lt + 1``: the residual draw (or the bonus draw).

A position can be proposed in several rounds (a proposal after a rejection is discarded
unseen), but each uniform decides at most one event, so runs are reproducible and exact, and
do not depend on how rows are batched.

**Greedy verification** (``mode="greedy"``) is its own mode: a proposal is kept while it equals
the target's argmax, the first mismatch is replaced by the argmax, and a fully accepted round
adds the argmax after it. The output equals :func:`~faithful.decode.greedy_argmax` of the target
token for token (ties go to the lowest id in both).

**Cost accounting.** The model protocol has no multi-token forward, so a round's target pass
is ``gamma`` one-token advances here; a model with a batched block forward would do it in one
call. ``target_passes`` counts rounds per row (one verification pass each), which is what
speculative decoding saves against one target call per token; it is not a wall-time claim.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from faithful.decode._common import (
    PAD,
    DecodeError,
    DecodeResult,
    check_max_new_tokens,
    log_softmax_at,
    reads_history,
    resolve_rng,
    scores_array,
    start_expanded,
)
from faithful.draw import inverse_cdf
from faithful.errors import SamplingParameterError
from faithful.models.base import FloatArray, IntArray, LanguageModel, VocabMismatchError, model_logits
from faithful.samplers import Sampler, make_sampler

__all__ = [
    "EXACT_RULE",
    "AcceptRule",
    "SpeculativeResult",
    "check_same_vocabulary",
    "speculative_sample",
]

Mode = Literal["sample", "greedy"]


@dataclass(frozen=True)
class AcceptRule:
    """The accept test and the residual of speculative sampling, as two pure functions.

    Attributes:
        name: a label.
        accept: ``(u (R,), q_draft(x) (R,), q_target(x) (R,)) -> bool (R,)``: whether proposal ``x`` stays.
        residual: ``(q_target (R, V), q_draft (R, V)) -> weights (R, V)``: what a rejected position is
            redrawn from (normalised by the draw).

    Only :data:`EXACT_RULE` is exact; other rules exist so that tests can show the fidelity
    harness catches a wrong one.
    """

    name: str
    accept: Callable[[FloatArray, FloatArray, FloatArray], np.ndarray]
    residual: Callable[[FloatArray, FloatArray], FloatArray]


def _accept_exact(u: FloatArray, q_draft_x: FloatArray, q_target_x: FloatArray) -> np.ndarray:
    # u < min(1, qt/qd) without a division: qd(x) > 0 for a proposal, and u < 1 accepts qt >= qd
    return np.asarray(u * q_draft_x <= q_target_x)


def _residual_exact(q_target: FloatArray, q_draft: FloatArray) -> FloatArray:
    return np.maximum(q_target - q_draft, 0.0)


EXACT_RULE = AcceptRule("leviathan-chen", _accept_exact, _residual_exact)
"""Accept with probability ``min(1, q_target / q_draft)``; redraw from ``norm(max(0, q_target - q_draft))``."""


@dataclass(frozen=True)
class SpeculativeResult:
    """Sequences decoded speculatively, and what it took.

    Attributes:
        result: a :class:`~faithful.decode.DecodeResult` (``B, K`` as in ``ancestral_sample``);
            ``logprobs`` are under the target model, ``proposal_logprobs`` under the target's
            processed distributions (None in greedy mode).
        mode: ``"sample"`` or ``"greedy"``. gamma: proposals per round.
        tokens: tokens generated over all rows.
        proposed: draft tokens proposed; tested: those the target tested (a proposal after a
            rejection is discarded untested); accepted: those kept; residual: redrawn after a
            rejection; bonus: drawn from the target after a fully accepted round.
        target_passes: verification passes, one per row per round (ancestral sampling needs one per token).
        draft_steps: draft forward steps per row, summed.
    """

    result: DecodeResult
    mode: str
    gamma: int
    tokens: int
    proposed: int
    tested: int
    accepted: int
    residual: int
    bonus: int
    target_passes: int
    draft_steps: int
    rule: str = field(default=EXACT_RULE.name)

    @property
    def acceptance_rate(self) -> float:
        """Accepted / tested proposals (Leviathan et al.'s alpha, estimated); nan when none were tested."""
        return self.accepted / self.tested if self.tested else float("nan")

    @property
    def tokens_per_target_pass(self) -> float:
        """Tokens committed per verification pass (1.0 for ancestral sampling)."""
        return self.tokens / self.target_passes if self.target_passes else float("nan")

    @property
    def target_calls_saved(self) -> float:
        """Share of target calls saved against one call per token: ``1 - target_passes / tokens``."""
        return 1.0 - self.target_passes / self.tokens if self.tokens else float("nan")

    def stats(self) -> dict[str, Any]:
        """The counts and rates as a JSON-ready dict."""
        return {
            "mode": self.mode,
            "rule": self.rule,
            "gamma": self.gamma,
            "tokens": self.tokens,
            "proposed": self.proposed,
            "tested": self.tested,
            "accepted": self.accepted,
            "residual": self.residual,
            "bonus": self.bonus,
            "target_passes": self.target_passes,
            "draft_steps": self.draft_steps,
            "acceptance_rate": self.acceptance_rate,
            "tokens_per_target_pass": self.tokens_per_target_pass,
            "target_calls_saved": self.target_calls_saved,
        }


def _symbols(model: LanguageModel) -> list[str] | None:
    """The model's token strings by id, when it exposes them (an n-gram ``vocab``, an HF tokenizer)."""
    vocab = getattr(model, "vocab", None)
    if vocab is not None and isinstance(getattr(vocab, "tokens", None), list):
        return [str(t) for t in vocab.tokens]
    tok = getattr(getattr(model, "tokenizer", None), "tokenizer", None)
    get_vocab = getattr(tok, "get_vocab", None)
    if callable(get_vocab):
        by_id = {int(i): str(s) for s, i in get_vocab().items()}
        return [by_id.get(i, "") for i in range(max(by_id, default=-1) + 1)]
    return None


def check_same_vocabulary(draft: LanguageModel, target: LanguageModel) -> None:
    """Refuse a draft whose vocabulary is not the target's: proposals are token ids of the target.

    The sizes and EOS ids must agree, and where both models expose their token strings
    (an n-gram's ``vocab``, a Hugging Face tokenizer) so must the strings.

    Raises:
        VocabMismatchError: what differs, and what to do.

    Example::

        >>> from faithful.models import NGramModel
        >>> a, b = NGramModel.from_text("ab\\n", n=2), NGramModel.from_text("xyz\\n", n=2)
        >>> try:
        ...     check_same_vocabulary(a, b)
        ... except VocabMismatchError as exc:
        ...     print(str(exc)[:43])
        the draft model's vocabulary (5 ids) is not
    """
    dv, tv = int(draft.vocab_size), int(target.vocab_size)
    fix = "use a draft trained with the target's tokenizer (the same ids for the same tokens)"
    if dv != tv:
        raise VocabMismatchError(
            f"the draft model's vocabulary ({dv} ids) is not the target's ({tv} ids); "
            f"speculative decoding proposes target token ids, so {fix}"
        )
    if draft.eos_token_id != target.eos_token_id:
        raise VocabMismatchError(
            f"the draft model ends sequences with token {draft.eos_token_id} and the target with "
            f"{target.eos_token_id}; {fix}"
        )
    ds, ts = _symbols(draft), _symbols(target)
    if ds is not None and ts is not None and ds[:tv] != ts[:tv]:
        diff = next(i for i, (a, b) in enumerate(zip(ds, ts, strict=False)) if a != b)
        raise VocabMismatchError(
            f"the draft and target vocabularies have the same size ({tv}) but different tokens "
            f"(id {diff} is {ds[diff]!r} in the draft, {ts[diff]!r} in the target); {fix}"
        )


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


def _check_sampler(sampler: Any, what: str) -> Sampler:
    if not isinstance(sampler, Sampler):
        raise SamplingParameterError(
            f"speculative decoding needs a faithful sampler for the {what} (faithful.samplers.make_sampler "
            f"or parse_sampler_spec), got {type(sampler).__name__}: it must give the exact q it draws from"
        )
    if sampler.mirostat is not None:
        raise SamplingParameterError(
            f"the {what} sampler {sampler.name!r} uses mirostat, whose state follows the drawn tokens; "
            "speculative decoding verifies against a fixed q per position, so use a stateless sampler"
        )
    return sampler


def _join_states(model: LanguageModel, states: list[Any], prompts: list[list[int]], tokens: IntArray) -> Any:
    """One state holding the rows of ``states`` in order; ``prompts`` and ``tokens`` (``(R, p)``) are theirs.

    The model protocol has no concatenation, so: a model's own ``concat_states(states)`` when it
    offers one; n-gram and callable-model states, which are plain per-row data, joined directly;
    any other model started on the rows' prompts and advanced along their ``p`` tokens, batched:
    the path that built the states it replaces (restarting on prompt + tokens would not be: a
    causal LM starts an empty prompt from its BOS token, and a non-empty one without it).
    """
    from faithful.models.callable import PrefixState
    from faithful.models.ngram import NGramState

    own = getattr(model, "concat_states", None)
    if callable(own):
        return own(states)
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


def speculative_sample(
    target: LanguageModel,
    draft: LanguageModel,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int,
    *,
    gamma: int = 4,
    sampler: Sampler | None = None,
    draft_sampler: Sampler | None = None,
    num_samples: int = 1,
    rng: Any = None,
    mode: Mode = "sample",
    rule: AcceptRule = EXACT_RULE,
) -> SpeculativeResult:
    """Speculative decoding: exact samples of ``target`` (under ``sampler``), proposed by ``draft``.

    Args:
        target: the model whose (processed) distribution the output follows.
        draft: a model over the same vocabulary (:func:`check_same_vocabulary`).
        prompts: ``B`` prompts of token ids.
        max_new_tokens: stop after this many tokens (>= 1); EOS (included) stops a row earlier.
        gamma: draft proposals per round (>= 1).
        sampler: the faithful sampler whose processed q of the target is sampled exactly
            (default: plain sampling). Not allowed in greedy mode.
        draft_sampler: the draft's sampler (default: ``sampler`` in sample mode, greedy in greedy mode).
        num_samples: ``K`` samples per prompt (row ``b * K + k``).
        rng: int seed, keyed generator, or None (fresh entropy); see the module docstring for the keys.
        mode: ``"sample"`` (speculative sampling) or ``"greedy"`` (greedy verification).
        rule: the accept/residual rule; only the default :data:`EXACT_RULE` is exact.

    Returns:
        A :class:`SpeculativeResult`: the decoded sequences and the acceptance counts.

    Raises:
        VocabMismatchError: the draft's vocabulary is not the target's.
        DecodeError: a bad ``gamma``, ``num_samples`` or ``mode``, or a sampler in greedy mode.
        SamplingParameterError: a sampler that is not a faithful one, or uses mirostat.
        InvalidLengthError: ``max_new_tokens < 1``.

    Example::

        >>> from faithful.models import NGramModel
        >>> text = "abc\\nabd\\nbca\\n"
        >>> small, big = NGramModel.from_text(text, n=2), NGramModel.from_text(text, n=3)
        >>> r = speculative_sample(big, small, [[]], 6, num_samples=8, rng=0)
        >>> r.result.tokens.shape[:2], 0.0 <= r.acceptance_rate <= 1.0
        ((1, 8), True)
    """
    max_new_tokens = check_max_new_tokens(max_new_tokens)
    if isinstance(gamma, bool) or not isinstance(gamma, int | np.integer) or gamma < 1:
        raise DecodeError(f"gamma (draft proposals per round) must be an integer >= 1, got {gamma!r}")
    if isinstance(num_samples, bool) or not isinstance(num_samples, int | np.integer) or num_samples < 1:
        raise DecodeError(f"num_samples must be an integer >= 1, got {num_samples!r}")
    if mode not in ("sample", "greedy"):
        raise DecodeError(f"mode must be 'sample' or 'greedy', got {mode!r}")
    check_same_vocabulary(draft, target)
    greedy = mode == "greedy"
    if greedy and sampler is not None:
        raise DecodeError(
            "greedy verification checks the target's argmax and takes no target sampler; "
            "pass draft_sampler= for the draft, or use mode='sample' with the sampler"
        )
    t_sampler = None if greedy else _check_sampler(sampler or make_sampler(), "target")
    if draft_sampler is None:
        draft_sampler = make_sampler(temperature=0) if greedy else t_sampler
    d_sampler = _check_sampler(draft_sampler, "draft")
    return _Run(
        target,
        draft,
        prompts,
        int(max_new_tokens),
        int(gamma),
        t_sampler,
        d_sampler,
        int(num_samples),
        rng,
        rule,
    ).run(mode)


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
        # the target scores the k+1 positions along the proposals (one pass with a block forward)
        t_states: list[Any] = [g.target]
        zs: list[np.ndarray] = []
        qts: list[FloatArray] = []
        for i in range(k + 1):
            if i > 0:
                t_states.append(self.target.advance(t_states[i - 1], xs[i - 1]))
            z = scores_array(model_logits(self.target, t_states[i]))
            zs.append(z)
            qts.append(self._target_q(z, rows, p + i, self._history(rows, p, xs[:i])))
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
        t_states: list[Any],
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
                        g.rows[idx], g.pos, self.draft.select(g.draft, idx), self.target.select(g.target, idx)
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
        return _Group(
            rows,
            pos,
            _join_states(self.draft, [g.draft for g in groups], prompts, done),
            _join_states(self.target, [g.target for g in groups], prompts, done),
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
        t_states: list[Any],
        xs: list[IntArray],
    ) -> None:
        """Rows that go on form new groups by how many proposals they kept; each gets its own states."""
        go_on = ~ended & (last >= 0) & (g.pos + kept + 1 < self.limit)
        for j_ in np.unique(kept[go_on]):
            j = int(j_)
            idx = np.flatnonzero(go_on & (kept == j)).astype(np.int64)
            full = len(idx) == len(g.rows)  # no select needed: the group goes on as one
            t_state = t_states[j] if full else self.target.select(t_states[j], idx)
            if j < len(d_states):
                d_state = d_states[j] if full else self.draft.select(d_states[j], idx)
            else:  # the draft's state after all its proposals: only needed now
                d_state = self.draft.advance(
                    d_states[-1] if full else self.draft.select(d_states[-1], idx), xs[-1][idx]
                )
                self.counts["draft_steps"] += len(idx)
            y = last[idx]
            self.todo.setdefault(g.pos + j + 1, []).append(
                _Group(
                    g.rows[idx],
                    g.pos + j + 1,
                    self.draft.advance(d_state, y),
                    self.target.advance(t_state, y),
                )
            )
