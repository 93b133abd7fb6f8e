"""Beam search (Hugging Face-compatible semantics) and diverse (grouped) beam search."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from faithful.decode._common import (
    PAD,
    BeamWidthError,
    BoolArray,
    DecodeError,
    DecodeResult,
    check_max_new_tokens,
    check_width,
    start_expanded,
)
from faithful.models.base import FloatArray, IntArray, LanguageModel

__all__ = ["EarlyStopping", "beam_search", "diverse_beam_search"]

EarlyStopping = bool | Literal["never"]
_NEG = -1.0e9  # the masking constant Hugging Face uses; kept so tie-breaking and edge cases agree


@dataclass
class _Group:
    """Beam-search bookkeeping for one group of ``k`` beams over ``b`` prompts."""

    k: int
    run_scores: FloatArray  # (b, k) summed model log-probs of running beams (or _NEG-masked)
    run_tokens: IntArray  # (b, k, T)
    run_tlp: FloatArray  # (b, k, T)
    fin_scores: FloatArray  # (b, k) length-normalised scores of finished hypotheses
    fin_tokens: IntArray  # (b, k, T)
    fin_tlp: FloatArray  # (b, k, T)
    fin_len: IntArray  # (b, k)
    fin_eos: BoolArray  # (b, k)
    fin_is: BoolArray  # (b, k) slot holds a real finished hypothesis
    improvable: BoolArray  # (b,) the early-stop heuristic says a running beam may still improve

    @classmethod
    def empty(cls, b: int, k: int, t: int) -> _Group:
        scores = np.full((b, k), _NEG)
        scores[:, 0] = 0.0
        return cls(
            k=k,
            run_scores=scores,
            run_tokens=np.full((b, k, t), PAD, dtype=np.int64),
            run_tlp=np.zeros((b, k, t)),
            fin_scores=np.full((b, k), _NEG),
            fin_tokens=np.full((b, k, t), PAD, dtype=np.int64),
            fin_tlp=np.zeros((b, k, t)),
            fin_len=np.zeros((b, k), dtype=np.int64),
            fin_eos=np.zeros((b, k), dtype=bool),
            fin_is=np.zeros((b, k), dtype=bool),
            improvable=np.ones(b, dtype=bool),
        )


def _top_sorted(x: FloatArray, k: int) -> IntArray:
    """Indices of the ``k`` largest entries of each row of ``x`` (2-D), sorted descending.

    Ties go to the lower index, whichever path computes it.
    """
    n = x.shape[1]
    if k < n and n >= _LARGE and "torch" in sys.modules:
        return _top_sorted_threshold(x, k)
    if k < n:
        # argpartition alone may pick any of the values tied at the boundary: take the lowest ids
        kth = np.partition(x, n - k, axis=1)[:, n - k : n - k + 1]
        above = x > kth
        tied = x == kth
        room = k - above.sum(axis=1, keepdims=True)
        chosen = above | (tied & (np.cumsum(tied, axis=1) <= room))
        part = np.nonzero(chosen)[1].reshape(x.shape[0], k)  # exactly k per row, ascending ids
    else:
        part = np.broadcast_to(np.arange(n), x.shape).copy()
    vals = np.take_along_axis(x, part, axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")
    out: IntArray = np.take_along_axis(part, order, axis=1).astype(np.int64)
    return out


_LARGE = 1 << 16


def _top_sorted_threshold(x: FloatArray, k: int) -> IntArray:
    """Large rows: torch's multithreaded topk finds the k-th value, numpy picks the same set as a stable sort.

    torch is only used when the caller already imported it (e.g. a Hugging Face model), never imported here.
    """
    torch = sys.modules["torch"]
    top = torch.topk(torch.from_numpy(x), k + 1, dim=1, sorted=True)
    vals, idx = top.values.numpy(), top.indices.numpy()
    out = np.empty((x.shape[0], k), dtype=np.int64)
    for r in range(x.shape[0]):
        # no tie at the boundary: the set is unique and only its order needs fixing; else scan for all ties
        unique = vals[r, k - 1] > vals[r, k]
        cand = idx[r, :k] if unique else np.flatnonzero(x[r] >= vals[r, k - 1])
        order = np.lexsort((cand, -x[r, cand]))[:k]  # value descending, then index ascending
        out[r] = cand[order]
    return out


@dataclass
class _Candidates:
    """A group's ``keep = min(2k, k V)`` best extensions per prompt, best first: flat ids ``parent * V + token``,
    accumulated model scores, ranking keys (scores minus any diversity penalty) and the token log-probs."""

    top: IntArray  # (b, keep)
    acc: FloatArray
    key: FloatArray
    lp: FloatArray


def _reference_candidates(g: _Group, lp: FloatArray, penalty: FloatArray | None) -> _Candidates:
    """The reference: every beam's full row of log-probs ``lp`` ``(b, k, V)``, a top-k over ``k * V``."""
    b, k, v = lp.shape
    acc = g.run_scores[:, :, None] + lp
    key = acc if penalty is None else acc - penalty[:, None, :]
    keep = min(2 * k, k * v)
    top = _top_sorted(key.reshape(b, k * v), keep)  # (b, keep)
    return _Candidates(
        top=top,
        acc=np.take_along_axis(acc.reshape(b, k * v), top, axis=1),
        key=np.take_along_axis(key.reshape(b, k * v), top, axis=1),
        lp=np.take_along_axis(lp.reshape(b, k * v), top, axis=1),
    )


def _fused_candidates(g: _Group, tokens: IntArray, lps: FloatArray, v: int) -> _Candidates:
    """From each beam's own best ``c`` tokens (:func:`faithful.kernels.beam_candidates`, ``(b * k, c)``).

    A candidate among a prompt's best ``2k`` is among its own beam's best ``2k`` (a beam's
    candidates rank by its log-probs alone), so ranking the ``k * c`` gathered ones by score,
    then flat id (the reference's order), gives the reference's ``keep`` candidates.
    """
    b, k = g.run_scores.shape
    c = tokens.shape[1]
    keep = min(2 * k, k * v)
    acc = (g.run_scores[:, :, None] + lps.reshape(b, k, c)).reshape(b, k * c)
    flat = (np.arange(k, dtype=np.int64)[None, :, None] * v + tokens.reshape(b, k, c)).reshape(b, k * c)
    order = np.lexsort((flat, -acc), axis=-1)[:, :keep]
    top_acc = np.take_along_axis(acc, order, axis=1)
    return _Candidates(
        top=np.take_along_axis(flat, order, axis=1),
        acc=top_acc,
        key=top_acc,
        lp=np.take_along_axis(lps.reshape(b, k * c), order, axis=1),
    )


def _group_step(
    g: _Group,
    cands: _Candidates,
    v: int,
    step: int,
    max_new_tokens: int,
    eos: int | None,
    length_penalty: float,
    early_stopping: EarlyStopping,
) -> tuple[IntArray, IntArray]:
    """Advance one group by one token from its candidates (vocabulary size ``v``).

    Returns the parent beam (within the group) and token of each new running beam, ``(b, k)`` each.
    """
    b, k = g.run_scores.shape
    keep = cands.top.shape[1]
    top, top_acc, top_key, top_lp = cands.top, cands.acc, cands.key, cands.lp
    parent, token = top // v, top % v
    rows = np.arange(b)[:, None]
    cand_tokens = g.run_tokens[rows, parent]
    cand_tokens[:, :, step] = token
    cand_tlp = g.run_tlp[rows, parent]
    cand_tlp[:, :, step] = top_lp
    hits = np.full((b, keep), step + 1 >= max_new_tokens)
    if eos is not None:
        hits |= token == eos
    # running beams for the next step: the best k candidates that did not stop
    running_key = top_key + hits * _NEG
    nxt = _top_sorted(running_key, k)
    new_parent = np.take_along_axis(parent, nxt, axis=1)
    new_token = np.take_along_axis(token, nxt, axis=1)
    # finished hypotheses: only the top-k ranked candidates may be finalised
    just_done = hits & (np.arange(keep) < k)[None, :]
    norm = top_acc / float(step + 1) ** length_penalty
    full = np.asarray(g.fin_is.all(axis=1) & (early_stopping is True), dtype=bool)
    norm = norm + full[:, None] * _NEG + (~g.improvable)[:, None] * _NEG + (~just_done) * _NEG
    merged_scores = np.concatenate([g.fin_scores, norm], axis=1)
    pick = _top_sorted(merged_scores, k)
    cand_len = np.full((b, keep), step + 1, dtype=np.int64)
    cand_eos = np.zeros((b, keep), dtype=bool) if eos is None else token == eos
    g.fin_scores = np.take_along_axis(merged_scores, pick, axis=1)
    g.fin_tokens = np.concatenate([g.fin_tokens, cand_tokens], axis=1)[rows, pick]
    g.fin_tlp = np.concatenate([g.fin_tlp, cand_tlp], axis=1)[rows, pick]
    g.fin_len = np.take_along_axis(np.concatenate([g.fin_len, cand_len], axis=1), pick, axis=1)
    g.fin_eos = np.take_along_axis(np.concatenate([g.fin_eos, cand_eos], axis=1), pick, axis=1)
    g.fin_is = np.take_along_axis(np.concatenate([g.fin_is, just_done], axis=1), pick, axis=1)
    # the running beams themselves (the accumulated score is the model's, never the penalised key)
    g.run_scores = np.take_along_axis(top_acc + hits * _NEG, nxt, axis=1)
    g.run_tokens = cand_tokens[rows, nxt]
    g.run_tlp = cand_tlp[rows, nxt]
    # early-stop heuristic, exactly as Hugging Face computes it after the step
    gen_len = step + 1
    best_len = max_new_tokens if (early_stopping == "never" and length_penalty > 0.0) else gen_len
    best_possible = g.run_scores[:, 0] / float(best_len) ** length_penalty
    worst = np.where(g.fin_is, g.fin_scores.min(axis=1, keepdims=True), _NEG)
    g.improvable &= np.any(best_possible[:, None] > worst, axis=1)
    return new_parent, new_token


_KERNELS = ("auto", "numba", "numpy")


def _use_kernels(kernels: str) -> bool:
    """Whether the compiled beam kernel runs (found by ``find_spec``: the numpy path never imports numba)."""
    if kernels not in _KERNELS:
        raise DecodeError(f"`kernels` must be one of {list(_KERNELS)}, got {kernels!r}")
    if kernels == "numpy":
        return False
    from faithful.kernels import available

    if not available():
        if kernels == "numba":
            raise DecodeError("`kernels='numba'` needs numba; install it with `pip install faithful[fast]`")
        return False
    return True


def _group_done(g: _Group, early_stopping: EarlyStopping) -> bool:
    return (not g.improvable.any()) or (bool(g.fin_is.all()) and early_stopping is True)


def _run_beams(
    model: LanguageModel,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int,
    num_groups: int,
    group_size: int,
    length_penalty: float,
    early_stopping: EarlyStopping,
    diversity_penalty: float,
    kernels: str = "auto",
) -> tuple[DecodeResult, list[_Group]]:
    k_total = num_groups * group_size
    state, b = start_expanded(model, prompts, k_total)
    eos = model.eos_token_id
    groups = [_Group.empty(b, group_size, max_new_tokens) for _ in range(num_groups)]
    raw = getattr(model, "next_logits", None)
    fused = num_groups == 1 and callable(raw) and _use_kernels(kernels)
    for step in range(max_new_tokens):
        if fused:
            from faithful.kernels import beam_candidates
            from faithful.tensors import is_torch_tensor, tensor_to_numpy

            assert callable(raw)
            x = raw(state)
            x = tensor_to_numpy(x) if is_torch_tensor(x) else np.asarray(x)
            v = x.shape[-1]
            cand_tok, cand_lp = beam_candidates(x, min(2 * group_size, v))
        else:
            lp = model.next_logprobs(state).reshape(b, num_groups, group_size, -1)
            v = lp.shape[-1]
        counts = np.zeros((b, v)) if num_groups > 1 else None
        parents = np.empty((b, num_groups, group_size), dtype=np.int64)
        tokens = np.empty((b, num_groups, group_size), dtype=np.int64)
        for gi, g in enumerate(groups):
            if fused:
                cands = _fused_candidates(g, cand_tok, cand_lp, v)
            else:
                penalty = None if counts is None or gi == 0 else diversity_penalty * counts
                cands = _reference_candidates(g, lp[:, gi], penalty)
            par, tok = _group_step(g, cands, v, step, max_new_tokens, eos, length_penalty, early_stopping)
            parents[:, gi] = par + gi * group_size
            tokens[:, gi] = tok
            if counts is not None:
                np.add.at(counts, (np.repeat(np.arange(b), group_size), tok.reshape(-1)), 1.0)
        if step + 1 >= max_new_tokens or all(_group_done(g, early_stopping) for g in groups):
            break
        flat = (np.arange(b)[:, None] * k_total + parents.reshape(b, k_total)).reshape(-1)
        state = model.advance(model.select(state, flat), tokens.reshape(-1))
    return _collect(groups, b, max_new_tokens), groups


def _collect(groups: list[_Group], b: int, t: int) -> DecodeResult:
    scores = np.concatenate([g.fin_scores for g in groups], axis=1)
    order = np.argsort(-scores, axis=1, kind="stable")
    rows = np.arange(b)[:, None]

    def cat(name: str) -> np.ndarray:
        return np.concatenate([getattr(g, name) for g in groups], axis=1)[rows, order]

    lengths = cat("fin_len")
    tokens = cat("fin_tokens")
    tlp = cat("fin_tlp")
    width = max(int(lengths.max()), 1)
    return DecodeResult(
        tokens=tokens[:, :, :width],
        lengths=lengths,
        logprobs=tlp.sum(axis=2),
        token_logprobs=tlp[:, :, :width],
        scores=scores[rows, order],
        finished=cat("fin_eos"),
    )


def _check_beam_args(length_penalty: float, early_stopping: EarlyStopping) -> None:
    if early_stopping not in (True, False, "never"):
        raise DecodeError(f"early_stopping must be True, False or 'never', got {early_stopping!r}")
    if not np.isfinite(length_penalty):
        raise DecodeError(f"length_penalty must be finite, got {length_penalty}")


def beam_search(
    model: LanguageModel,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int,
    *,
    num_beams: int = 4,
    num_return_sequences: int | None = None,
    length_penalty: float = 1.0,
    early_stopping: EarlyStopping = False,
    return_distributions: bool = False,
    kernels: str = "auto",
) -> DecodeResult:
    """Beam search for high-probability sequences; returns the n-best with scores.

    Semantics match Hugging Face ``generate(num_beams=..., do_sample=False)`` so
    that the two give the same sequences:

    - Each step extends every running beam by every token, keeps the ``2 * num_beams``
      best by summed log-probability, finalises those among the top ``num_beams`` that
      end (EOS, or reaching ``max_new_tokens``) and continues with the best ``num_beams``
      that did not end.
    - A finished hypothesis is scored ``sum log p / L ** length_penalty`` where ``L`` is
      the number of *generated* tokens (EOS included, prompt excluded): ``0`` ranks by
      raw log-probability, ``1`` by per-token average, larger values favour long outputs.
    - ``early_stopping=True`` stops a prompt once ``num_beams`` hypotheses are finished.
      ``False`` stops when the best running beam, scored at its current length, cannot beat
      the worst kept hypothesis (Hugging Face's heuristic; exact when ``length_penalty <= 0``).
      ``"never"`` scores the running beam at ``max_new_tokens`` when ``length_penalty > 0``,
      so it only stops when no improvement is possible (the canonical algorithm).

    Args:
        model: any :class:`~faithful.models.base.LanguageModel`.
        prompts: ``B`` prompts of token ids.
        max_new_tokens: the longest continuation (>= 1).
        num_beams: beam width ``K``; at most the number of distinct continuations.
        num_return_sequences: how many of the ``K`` finished hypotheses to return (default ``K``).
        length_penalty: exponent of the length normalisation (see above).
        early_stopping: ``True``, ``False`` or ``"never"`` (see above).
        return_distributions: also return the model's next-token distributions along each hypothesis.
        kernels: ``"auto"`` (default): for a model with raw logits (``next_logits``, e.g. Hugging
            Face) and numba installed, one compiled pass per beam computes its exact float64
            log-normaliser and its ``2K`` best tokens, reading the model's logits in place;
            ``"numba"`` requires that; ``"numpy"`` is the reference (full float64 log-softmax rows
            and a top-k over ``K * V``). Both give the same beams: token log-probs agree to
            float64 rounding of the normaliser.

    Returns:
        A :class:`DecodeResult` with ``K' = num_return_sequences`` candidates sorted by ``scores``
        (length-normalised); ``logprobs`` are the exact model log-probabilities.

    Raises:
        InvalidLengthError: when ``max_new_tokens < 1``.
        BeamWidthError: when ``num_beams`` is below 1 or above the number of distinct sequences.
        DecodeError: on an invalid ``early_stopping``, ``length_penalty`` or ``num_return_sequences``.

    Example::

        >>> from faithful.models import NGramModel
        >>> m = NGramModel.from_text("abc\\nabd\\nabd\\n", n=3)
        >>> r = beam_search(m, [[]], 5, num_beams=2)
        >>> [m.vocab.decode(s) for s in r.sequences()[0]]
        ['abd', 'abc']
    """
    max_new_tokens = check_max_new_tokens(max_new_tokens)
    num_beams = check_width("num_beams", num_beams, model, max_new_tokens)
    _check_beam_args(length_penalty, early_stopping)
    _use_kernels(kernels)  # a bad value is an error whatever the model
    n_ret = num_beams if num_return_sequences is None else num_return_sequences
    if not 1 <= n_ret <= num_beams:
        raise DecodeError(f"num_return_sequences must be in 1..num_beams={num_beams}, got {n_ret}")
    result, _ = _run_beams(
        model, prompts, max_new_tokens, 1, num_beams, length_penalty, early_stopping, 0.0, kernels
    )
    result = _take(result, n_ret)
    _check_possible(result, num_beams)
    if return_distributions:
        result = _with_distributions(model, prompts, result)
    return result


def _check_possible(result: DecodeResult, width: int) -> None:
    # an empty slot (length 0) or a hypothesis through a zero-probability token means there were not enough
    if not np.all(np.isfinite(result.logprobs)) or np.any(result.lengths == 0):
        raise BeamWidthError(
            f"num_beams={width} exceeds the number of sequences with positive probability for some prompt; "
            "lower num_beams"
        )


def diverse_beam_search(
    model: LanguageModel,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int,
    *,
    num_beams: int = 4,
    num_groups: int = 2,
    diversity_penalty: float = 0.5,
    num_return_sequences: int | None = None,
    length_penalty: float = 1.0,
    early_stopping: EarlyStopping = False,
    return_distributions: bool = False,
) -> DecodeResult:
    """Diverse beam search (Vijayakumar et al., 2018): ``num_groups`` groups with a Hamming penalty.

    The beams are split into ``num_groups`` groups of ``num_beams // num_groups``.
    At each step the groups are extended in order; group ``g`` ranks candidates by
    ``score - diversity_penalty * (times the token was chosen by groups < g at this step)``.
    The penalty only steers the choice: hypotheses keep their exact model
    log-probabilities and are finalised and scored as in :func:`beam_search`.
    The result merges all groups' hypotheses, best first.

    Args:
        num_beams: total beams; must be divisible by ``num_groups``.
        num_groups: number of groups (1 gives plain beam search).
        diversity_penalty: the Hamming penalty weight (>= 0).
        Other arguments as in :func:`beam_search`.

    Returns:
        A :class:`DecodeResult` with up to ``num_beams`` candidates, sorted by score.

    Raises:
        DecodeError: when ``num_beams`` is not divisible by ``num_groups`` or the penalty is negative.
        BeamWidthError, InvalidLengthError: as in :func:`beam_search`.

    Example::

        >>> from faithful.models import NGramModel
        >>> m = NGramModel.from_text("abc\\nabd\\nxyz\\n", n=3)
        >>> r = diverse_beam_search(m, [[]], 5, num_beams=2, num_groups=2, diversity_penalty=10.0)
        >>> len({tuple(s[:1]) for s in r.sequences()[0]})
        2
    """
    max_new_tokens = check_max_new_tokens(max_new_tokens)
    num_beams = check_width("num_beams", num_beams, model, max_new_tokens)
    if (
        isinstance(num_groups, bool)
        or not isinstance(num_groups, int)
        or num_groups < 1
        or num_beams % num_groups
    ):
        raise DecodeError(f"num_beams={num_beams} must be a positive multiple of num_groups={num_groups}")
    group_size = num_beams // num_groups
    check_width("num_beams // num_groups", group_size, model, max_new_tokens)
    if not diversity_penalty >= 0:
        raise DecodeError(f"diversity_penalty must be >= 0, got {diversity_penalty}")
    _check_beam_args(length_penalty, early_stopping)
    n_ret = num_beams if num_return_sequences is None else num_return_sequences
    if not 1 <= n_ret <= num_beams:
        raise DecodeError(f"num_return_sequences must be in 1..num_beams={num_beams}, got {n_ret}")
    result, _ = _run_beams(
        model,
        prompts,
        max_new_tokens,
        num_groups,
        group_size,
        length_penalty,
        early_stopping,
        float(diversity_penalty),
    )
    result = _take(result, n_ret)
    _check_possible(result, num_beams)
    if return_distributions:
        result = _with_distributions(model, prompts, result)
    return result


def _take(r: DecodeResult, n: int) -> DecodeResult:
    width = max(int(r.lengths[:, :n].max()), 1)
    return DecodeResult(
        tokens=r.tokens[:, :n, :width],
        lengths=r.lengths[:, :n],
        logprobs=r.logprobs[:, :n],
        token_logprobs=r.token_logprobs[:, :n, :width],
        scores=r.scores[:, :n],
        finished=r.finished[:, :n],
    )


def _with_distributions(
    model: LanguageModel, prompts: Sequence[Sequence[int]], r: DecodeResult
) -> DecodeResult:
    """Re-score the returned hypotheses to record the model's distribution at each of their steps."""
    from faithful.decode.scoring import step_distributions

    dists = step_distributions(model, prompts, r.tokens, r.lengths)
    return DecodeResult(
        tokens=r.tokens,
        lengths=r.lengths,
        logprobs=r.logprobs,
        token_logprobs=r.token_logprobs,
        scores=r.scores,
        finished=r.finished,
        distributions=dists,
    )
