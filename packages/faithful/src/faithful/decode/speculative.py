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
do not depend on how rows are batched (for a model whose rows do not depend on the batch).

**Greedy verification** (``mode="greedy"``) is its own mode: a proposal is kept while it equals
the target's argmax, the first mismatch is replaced by the argmax, and a fully accepted round
adds the argmax after it. The output equals :func:`~faithful.decode.greedy_argmax` of the target
token for token (ties go to the lowest id in both).

**Cost accounting.** A round costs the draft ``gamma`` one-token steps and the target ONE
call: :func:`faithful.models.base.score_block` feeds the last committed token and the ``gamma``
proposals together (a Hugging Face target: one forward pass over them with its KV cache, the
cache then cropped to the accepted prefix; an n-gram: one lookup). A model without a block
method is stepped one token at a time (the same numbers, ``gamma + 1`` calls). ``target_passes``
counts rounds per row, against ancestral sampling's one call per token.

**Where the target's q comes from.** The verification uses the target's logits from the block
pass, not from one-token passes. For an n-gram or callable model they are the same numbers bit
for bit; for a neural target they are the same model's logits on the same prefix computed as
one matrix product over the block instead of ``gamma + 1`` (float32: equal to a few 1e-6,
tested). The exactness argument holds for the q actually used, so the output is an exact
sample of the target as scored by the block pass: of the target itself up to that float
rounding, which is the same rounding difference as between two batch sizes.

**Batching.** Rows that reach one position in different rounds are batched together again
(the lowest position first): n-gram and callable states are joined directly, a Hugging Face
model left-pads the shorter KV caches (``concat_states``; masked positions get attention 0),
and any other model is restarted on those rows' prompts and advanced along their tokens. Rows
at different positions wait for each other, so with ``B > 1`` a round often holds only some of
the rows: the target's calls are fewer per row but smaller than ancestral sampling's. A round
holds at most 256 MB of ``(rows, V)`` arrays. ``bench/faithful_speculative.py`` measures it all.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from faithful.decode._common import (
    DecodeError,
    DecodeResult,
    check_max_new_tokens,
)
from faithful.errors import SamplingParameterError
from faithful.models.base import FloatArray, LanguageModel, VocabMismatchError
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


def _symbols(model: LanguageModel) -> tuple[str, list[str]] | None:
    """The model's token strings by id and their kind, when it exposes them (an n-gram ``vocab``, an HF tokenizer)."""
    vocab = getattr(model, "vocab", None)
    if vocab is not None and isinstance(getattr(vocab, "tokens", None), list):
        return "vocab", [str(t) for t in vocab.tokens]
    tok = getattr(getattr(model, "tokenizer", None), "tokenizer", None)
    get_vocab = getattr(tok, "get_vocab", None)
    if callable(get_vocab):
        by_id = {int(i): str(s) for s, i in get_vocab().items()}
        return "tokenizer", [by_id.get(i, "") for i in range(max(by_id, default=-1) + 1)]
    return None


def check_same_vocabulary(draft: LanguageModel, target: LanguageModel) -> None:
    """Refuse a draft whose vocabulary is not the target's: proposals are token ids of the target.

    The sizes and EOS ids must agree, and where both models expose their token strings in the
    same kind of vocabulary (two n-gram ``vocab``s, two Hugging Face tokenizers) so must the strings.

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
    d_sym, t_sym = _symbols(draft), _symbols(target)
    # strings are compared only between vocabularies of one kind: an n-gram over a tokenizer's ids
    # spells its tokens as those ids, not as the tokenizer's strings
    if d_sym is None or t_sym is None or d_sym[0] != t_sym[0]:
        return
    ds, ts = d_sym[1], t_sym[1]
    if ds[:tv] != ts[:tv]:
        # the first id that differs, or where one list of strings ends before the other
        diff = next(
            (i for i, (a, b) in enumerate(zip(ds, ts, strict=False)) if a != b), min(len(ds), len(ts))
        )
        ds, ts = [*ds, "<none>"], [*ts, "<none>"]
        raise VocabMismatchError(
            f"the draft and target vocabularies have the same size ({tv}) but different tokens "
            f"(id {diff} is {ds[diff]!r} in the draft, {ts[diff]!r} in the target); {fix}"
        )


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
    from faithful.decode._speculative_run import _Run

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
