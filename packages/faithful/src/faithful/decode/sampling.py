"""Single-path decoders: the argmax baseline and ancestral sampling with any token sampler."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from faithful._numeric import check_row_max
from faithful.decode._common import (
    PAD,
    DecodeResult,
    TokenSampler,
    check_max_new_tokens,
    check_width,
    draws_from_the_model,
    log_softmax_at,
    reads_history,
    resolve_rng,
    scores_array,
    start_expanded,
)
from faithful.models.base import FloatArray, IntArray, LanguageModel, log_normalize, model_logits
from faithful.samplers import make_sampler

__all__ = ["ancestral_sample", "greedy_argmax"]

Scores = npt.NDArray[np.floating[Any]]
# choose(raw logits of the active rows (A, V), global row ids (A,), step, history)
#   -> (tokens (A,), log q (A,), q or None, the model's log-probabilities of the tokens or None when unknown)
_Chooser = Callable[
    [Scores, IntArray, int, list[IntArray]],
    tuple[IntArray, FloatArray, FloatArray | None, FloatArray | None],
]


def _single_path(
    model: LanguageModel,
    prompts: Sequence[Sequence[int]],
    copies: int,
    max_new_tokens: int,
    choose: _Chooser,
    *,
    return_distributions: bool,
    needs_history: bool,
    deterministic: bool,
) -> DecodeResult:
    state, b = start_expanded(model, prompts, copies)
    n = b * copies
    eos = model.eos_token_id
    feed_after_end = eos if eos is not None else 0
    tokens = np.full((n, max_new_tokens), PAD, dtype=np.int64)
    tlp = np.zeros((n, max_new_tokens))
    qlp = np.zeros(n)
    dists = np.zeros((n, max_new_tokens, model.vocab_size)) if return_distributions else None
    lengths = np.zeros(n, dtype=np.int64)
    finished = np.zeros(n, dtype=bool)
    active = np.ones(n, dtype=bool)
    all_rows = np.arange(n, dtype=np.int64)
    prompt_rows = [np.asarray(list(prompts[i // copies]), dtype=np.int64) for i in range(n)]
    for step in range(max_new_tokens):
        # the model's own logits, read in place: processors are defined on raw logits (HF's
        # repetition penalty divides positive logits and multiplies negative ones), not on log-softmax
        scores = scores_array(model_logits(model, state))
        idx = all_rows if active.all() else all_rows[active]
        active_scores = scores if idx.shape[0] == n else scores[idx]
        history = [np.concatenate([prompt_rows[i], tokens[i, :step]]) for i in idx] if needs_history else []
        chosen, chosen_q, q, model_lp = choose(active_scores, idx, step, history)
        tokens[idx, step] = chosen
        tlp[idx, step] = log_softmax_at(active_scores, chosen) if model_lp is None else model_lp
        qlp[idx] += chosen_q
        if dists is not None:
            dists[idx, step] = np.exp(log_normalize(active_scores)) if q is None else q
        lengths[idx] += 1
        if eos is not None:
            ended = chosen == eos
            finished[idx[ended]] = True
            active[idx[ended]] = False
        if step + 1 == max_new_tokens or not active.any():
            break
        feed = np.full(n, feed_after_end, dtype=np.int64)
        feed[idx] = chosen
        state = model.advance(state, feed)
    width = int(lengths.max())
    logprobs = tlp.sum(axis=1)
    return DecodeResult(
        tokens=tokens[:, :width].reshape(b, copies, width),
        lengths=lengths.reshape(b, copies),
        logprobs=logprobs.reshape(b, copies),
        token_logprobs=tlp[:, :width].reshape(b, copies, width),
        scores=logprobs.reshape(b, copies).copy(),
        finished=finished.reshape(b, copies),
        distributions=None if dists is None else dists[:, :width].reshape(b, copies, width, -1),
        proposal_logprobs=None if deterministic else qlp.reshape(b, copies),
    )


def greedy_argmax(
    model: LanguageModel,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int,
    *,
    return_distributions: bool = False,
) -> DecodeResult:
    """The argmax baseline: at every step take the single most likely next token.

    This is prediction, not sampling: it returns the same sequence every time and
    need not be the most likely *sequence* (use :func:`beam_search` for a better
    search, or :func:`ancestral_sample` to draw from the model). Ties go to the
    lowest token id, as in ``torch.argmax`` and Hugging Face ``generate``.

    Args:
        model: any :class:`~faithful.models.base.LanguageModel`.
        prompts: ``B`` prompts of token ids.
        max_new_tokens: stop after this many tokens (>= 1); EOS (included) stops a row earlier.
        return_distributions: also return the model's ``(B, 1, T, V)`` next-token distributions.

    Returns:
        A :class:`DecodeResult` with ``K = 1``.

    Raises:
        InvalidLengthError: when ``max_new_tokens < 1``.
        EmptyPromptError, VocabMismatchError: from the model, on bad prompts.

    Example::

        >>> from faithful.models import NGramModel
        >>> m = NGramModel.from_text("abc\\nabc\\n", n=3)
        >>> m.vocab.decode(greedy_argmax(m, [[]], 10).best()[0])
        'abc'
    """
    max_new_tokens = check_max_new_tokens(max_new_tokens)

    def choose(
        x: Scores, rows: IntArray, step: int, history: list[IntArray]
    ) -> tuple[IntArray, FloatArray, FloatArray | None, FloatArray | None]:
        # argmax takes a NaN as the maximum and the first token of a row of -inf: a model's broken
        # row must be an error, as in every sampler, never a silent token
        check_row_max(x.max(axis=1))
        return np.argmax(x, axis=1).astype(np.int64), np.zeros(x.shape[0]), None, None

    return _single_path(
        model,
        prompts,
        1,
        max_new_tokens,
        choose,
        return_distributions=return_distributions,
        needs_history=False,
        deterministic=True,
    )


def ancestral_sample(
    model: LanguageModel,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int,
    *,
    sampler: TokenSampler | None = None,
    num_samples: int = 1,
    rng: Any = None,
    return_distributions: bool = False,
) -> DecodeResult:
    """Ancestral sampling: draw each token from the sampler's distribution given the prefix.

    With the default (untempered, untruncated) sampler the sequences are exact
    samples from the model's sequence distribution. Draws follow the keyed-RNG
    contract: row ``b * num_samples + k`` at step ``t`` uses the uniforms keyed by
    ``(seed, row, t)``, so results do not depend on batching.

    Args:
        model: any :class:`~faithful.models.base.LanguageModel`.
        prompts: ``B`` prompts of token ids.
        max_new_tokens: stop after this many tokens (>= 1); EOS (included) stops a row earlier.
        sampler: a token sampler (``faithful.samplers.make_sampler(...)``); default: plain sampling.
        num_samples: ``K`` independent samples per prompt.
        rng: int seed, keyed generator, or None (fresh entropy).
        return_distributions: also return each step's ``q`` ``(B, K, T, V)``.

    Returns:
        A :class:`DecodeResult`; ``logprobs`` are under the model, ``proposal_logprobs`` under the sampler.

    Raises:
        InvalidLengthError: when ``max_new_tokens < 1``.
        BeamWidthError: when ``num_samples < 1``.

    Example::

        >>> from faithful.models import NGramModel
        >>> m = NGramModel.from_text("abc\\nabd\\n", n=3)
        >>> r = ancestral_sample(m, [[]], 10, num_samples=4, rng=0)
        >>> r.tokens.shape[:2]
        (1, 4)
    """
    max_new_tokens = check_max_new_tokens(max_new_tokens)
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        check_width("num_samples", num_samples, model, max_new_tokens)
    if sampler is None:
        sampler = default_sampler()
    keyed = resolve_rng(rng)
    the_sampler = sampler
    # the plain sampler's q is the model's distribution: its log q of the drawn token, from the
    # sampler's own float64 normaliser, is the model's log-probability (no second pass over the row)
    plain = draws_from_the_model(sampler)
    needs_history = reads_history(sampler)

    def choose(
        x: Scores, rows: IntArray, step: int, history: list[IntArray]
    ) -> tuple[IntArray, FloatArray, FloatArray | None, FloatArray | None]:
        res = the_sampler(
            x,
            rng=keyed,
            step=step,
            rows=rows,
            history=history if needs_history else None,
            return_q=return_distributions,
        )
        # a torch-backend sampler returns tensors on the logits' device (a GPU's too): read them here
        log_q = np.asarray(_on_host(res.logprobs), dtype=np.float64)
        return (
            np.asarray(_on_host(res.tokens), dtype=np.int64),
            log_q,
            None if res.q is None else np.asarray(_on_host(res.q), dtype=np.float64),
            log_q if plain else None,
        )

    return _single_path(
        model,
        prompts,
        num_samples,
        max_new_tokens,
        choose,
        return_distributions=return_distributions,
        needs_history=needs_history,
        deterministic=False,
    )


def _on_host(x: Any) -> Any:
    """A sampler's output as a host array (tensors from the torch backend are copied back)."""
    from faithful.tensors import is_torch_tensor, tensor_to_numpy

    return tensor_to_numpy(x) if is_torch_tensor(x) else x


def default_sampler() -> TokenSampler:
    """Plain, exact sampling from the model's distribution: ``faithful.samplers.make_sampler()``."""
    made: TokenSampler = make_sampler()
    return made
