"""Speculative decoding held to the harness: the library behind ``faithful speculative``.

:func:`check_speculative` decodes ``n`` outputs with :func:`faithful.decode.speculative.speculative_sample`
and measures them against the target under the sampler: exactly (the enumerated sequence
distribution of the processed target, :func:`~faithful.fidelity.compare_exact`) when it enumerates,
else with the surprisal check against exact ancestral samples of the same processed target
(:func:`~faithful.fidelity.compare_to_reference`). Greedy verification is checked token for token
against :func:`~faithful.decode.greedy_argmax`. The acceptance counts come with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from faithful.decode.speculative import EXACT_RULE, AcceptRule, SpeculativeResult, speculative_sample
from faithful.fidelity.compare import Fidelity, _jsonable, compare_exact, compare_to_reference
from faithful.fidelity.exact import NotEnumerableError, enumerate_sequences
from faithful.models.base import LanguageModel, model_logits
from faithful.samplers import Sampler, make_sampler

__all__ = ["ProcessedModel", "SpeculativeCheck", "check_speculative"]

Key = tuple[int, ...]
_REFERENCE_SEED_OFFSET = 1_000_003  # the reference samples share no uniforms with the decoder's


class ProcessedModel:
    """A model under a sampler, as a model of its own: next-token ``log q`` (the sampler's processed q).

    Its sequence distribution is what ancestral sampling with ``sampler`` draws from, so it can be
    enumerated and scored like any model. The history is kept per row for samplers that read it.
    Stochastic (XTC) and mirostat samplers have no fixed q per prefix and are refused.

    Example::

        >>> from faithful.models import NGramModel
        >>> m = NGramModel.from_text("ab\\nab\\nba\\n", n=2)
        >>> p = ProcessedModel(m, make_sampler(top_k=1))
        >>> int((np.exp(p.next_logprobs(p.start([[]]))) > 0).sum())
        1
    """

    def __init__(self, model: LanguageModel, sampler: Sampler) -> None:
        from faithful.errors import SamplingParameterError

        if sampler.stochastic or sampler.mirostat is not None:
            raise SamplingParameterError(
                f"{sampler.name!r} has no fixed q per prefix (XTC's coin or mirostat's state); "
                "the harness cannot enumerate or score it"
            )
        self.model, self.sampler = model, sampler
        self.vocab_size, self.eos_token_id = model.vocab_size, model.eos_token_id

    def start(self, prompts: Sequence[Sequence[int]]) -> Any:
        return self.model.start(prompts), [[int(t) for t in p] for p in prompts]

    def next_logprobs(self, state: Any) -> np.ndarray:
        inner, hist = state
        z = np.asarray(model_logits(self.model, inner), dtype=np.float64)
        q = self.sampler.distribution(z, history=hist)
        with np.errstate(divide="ignore"):
            out: np.ndarray = np.log(q)
        return out

    def advance(self, state: Any, tokens: np.ndarray) -> Any:
        inner, hist = state
        return self.model.advance(inner, tokens), [[*h, int(t)] for h, t in zip(hist, tokens, strict=True)]

    def select(self, state: Any, indices: np.ndarray) -> Any:
        inner, hist = state
        return self.model.select(inner, indices), [list(hist[int(i)]) for i in indices]


@dataclass(frozen=True)
class SpeculativeCheck:
    """Speculative outputs against the target's (processed) distribution.

    Attributes:
        result: the :class:`~faithful.decode.speculative.SpeculativeResult` (counts, rates, sequences).
        fidelity: the harness's verdict in sample mode (exact or reference), None in greedy mode.
        matches_greedy: greedy mode: whether every output equals the target's greedy decoding.
        note: which check ran and why.
        settings: what was run (models, sampler, gamma, n, max_new_tokens, seed).
    """

    result: SpeculativeResult
    fidelity: Fidelity | None
    matches_greedy: bool | None
    note: str
    settings: dict[str, Any]

    @property
    def consistent(self) -> bool:
        """True when the outputs are the target's: the harness does not reject them, or greedy matches."""
        if self.fidelity is None:
            return bool(self.matches_greedy)
        return self.fidelity.consistent

    @property
    def p_value(self) -> float | None:
        """The harness's p-value (exact mode: ``sequence["pvalue"]``; reference: the surprisal check's)."""
        if self.fidelity is None:
            return None
        if self.fidelity.mode == "exact":
            return float(self.fidelity.sequence["pvalue"])
        return None if self.fidelity.surprisal is None else float(self.fidelity.surprisal.p_value)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = _jsonable(
            {
                **self.settings,
                "consistent": self.consistent,
                "p_value": self.p_value,
                "fidelity_mode": None if self.fidelity is None else self.fidelity.mode,
                "matches_greedy": self.matches_greedy,
                "note": self.note,
                "stats": self.result.stats(),
                "fidelity": None if self.fidelity is None else self.fidelity.to_dict(),
            }
        )
        return out


def check_speculative(
    target: LanguageModel,
    draft: LanguageModel,
    *,
    sampler: Sampler | None = None,
    draft_sampler: Sampler | None = None,
    gamma: int = 4,
    n: int = 2000,
    max_new_tokens: int = 8,
    prompt: Sequence[int] = (),
    seed: int = 0,
    mode: str = "sample",
    exact: bool | None = None,
    threshold: float = 1e-6,
    min_coverage: float = 0.95,
    rule: AcceptRule = EXACT_RULE,
    names: tuple[str, str] = ("target", "draft"),
) -> SpeculativeCheck:
    """Decode ``n`` outputs speculatively and check they are the target's (under ``sampler``).

    Parameters:
        target, draft: models over one vocabulary. sampler, draft_sampler, gamma, mode, rule: as in
            :func:`~faithful.decode.speculative.speculative_sample`. n: outputs. max_new_tokens: the
            length bound. prompt: token ids every output continues. seed: of the decoder (the
            reference samples use ``seed + 1000003``). exact: True: require enumeration; False: the
            surprisal check; None: exact when the processed target enumerates with
            ``covered_mass >= min_coverage``. threshold: pruning of the enumeration. names: how the
            two models are described.

    Returns:
        A :class:`SpeculativeCheck`.

    Raises:
        VocabMismatchError: the draft's vocabulary is not the target's.
        NotEnumerableError: ``exact=True`` and the processed target does not enumerate.
        DecodeError, SamplingParameterError: bad decoder arguments.
    """
    from faithful.decode import ancestral_sample, greedy_argmax

    r = speculative_sample(
        target,
        draft,
        [list(prompt)],
        max_new_tokens,
        gamma=gamma,
        sampler=sampler,
        draft_sampler=draft_sampler,
        num_samples=n,
        rng=seed,
        mode=mode,  # type: ignore[arg-type]
        rule=rule,
    )
    settings = {
        "target": names[0],
        "draft": names[1],
        "sampler": None if sampler is None else sampler.name,
        "draft_sampler": None if draft_sampler is None else draft_sampler.name,
        "mode": mode,
        "gamma": gamma,
        "n": n,
        "max_new_tokens": max_new_tokens,
        "seed": seed,
        "prompt": [int(t) for t in prompt],
    }
    outs: list[Key] = [tuple(s) for s in r.result.sequences()[0]]
    if mode == "greedy":
        want = tuple(greedy_argmax(target, [list(prompt)], max_new_tokens).best()[0])
        same = all(o == want for o in outs)
        return SpeculativeCheck(
            r, None, same, "greedy verification against greedy decoding of the target", settings
        )
    processed = ProcessedModel(target, sampler or make_sampler())
    dist = None
    note = "surprisal check against exact ancestral samples of the target (exact metrics not requested)"
    if exact is not False:
        try:
            dist = enumerate_sequences(processed, max_new_tokens, prompt=prompt, threshold=threshold)
        except NotEnumerableError as exc:
            if exact:
                raise
            note = f"not enumerable ({exc}); surprisal check against exact ancestral samples"
        if dist is not None and dist.covered_mass < min_coverage:
            if exact:
                raise NotEnumerableError(
                    f"enumeration covered only {dist.covered_mass:.3f} of the mass (need {min_coverage}); "
                    "lower the threshold or max_new_tokens, or use the surprisal check"
                )
            note = f"enumeration covered only {dist.covered_mass:.3f}; surprisal check against exact samples"
            dist = None
    if dist is not None:
        fid = compare_exact(outs, dist, model=processed, seed=seed)
        note = f"exact: {len(dist.probs)} outputs of the target enumerated, covering {dist.covered_mass:.4f}"
    else:
        reference = ancestral_sample(
            target,
            [list(prompt)],
            max_new_tokens,
            sampler=sampler,
            num_samples=n,
            rng=seed + _REFERENCE_SEED_OFFSET,
        ).sequences()[0]
        fid = compare_to_reference(
            outs, [tuple(s) for s in reference], model=processed, max_length=max_new_tokens, prompt=prompt
        )
    return SpeculativeCheck(r, fid, None, note, settings)
