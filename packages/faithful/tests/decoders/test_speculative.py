"""Speculative decoding, proved by the harness: exact against the target, and a wrong rule caught."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from faithful.decode import ancestral_sample, greedy_argmax
from faithful.decode.speculative import (
    EXACT_RULE,
    AcceptRule,
    SpeculativeResult,
    check_same_vocabulary,
    speculative_sample,
)
from faithful.errors import FaithfulError, SamplingParameterError
from faithful.fidelity import compare_exact, enumerate_sequences
from faithful.models import CallableModel, NGramModel
from faithful.models.base import VocabMismatchError
from faithful.referee.speculation import ProcessedModel
from faithful.samplers import make_sampler, parse_sampler_spec

TEXT = "ab\nabc\nb\nba\ncab\naa\nbca\nabcab\n"
T = 5
N = 20000


@pytest.fixture(scope="module")
def draft() -> NGramModel:
    return NGramModel.from_text(TEXT, n=2)


@pytest.fixture(scope="module")
def target() -> NGramModel:
    return NGramModel.from_text(TEXT, n=4)


@pytest.fixture(scope="module")
def target_dist(target: NGramModel) -> Any:
    return enumerate_sequences(target, T, threshold=0.0)


def _outputs(r: SpeculativeResult) -> list[tuple[int, ...]]:
    return [tuple(s) for s in r.result.sequences()[0]]


def _check_counts(r: SpeculativeResult) -> None:
    # every committed token is an accepted proposal, a residual draw or a bonus draw
    assert r.tokens == int(r.result.lengths.sum()) == r.accepted + r.residual + r.bonus
    assert r.tested == r.accepted + r.residual  # a tested proposal is kept or redrawn
    assert r.accepted <= r.tested <= r.proposed
    assert 0 < r.target_passes < r.tokens  # fewer verification passes than target calls of ancestral sampling


def test_speculative_samples_are_exact_samples_of_the_target(
    draft: NGramModel, target: NGramModel, target_dist: Any
) -> None:
    r = speculative_sample(target, draft, [[]], T, gamma=3, num_samples=N, rng=0)
    assert target_dist.covered_mass == pytest.approx(1.0)
    fid = compare_exact(_outputs(r), target_dist, model=target)
    assert fid.consistent, fid.sequence
    assert fid.sequence["tv"] < fid.sequence["tv_null_q95"]
    _check_counts(r)
    assert 0.5 < r.acceptance_rate < 0.95  # the bigram draft is close to, and not the same as, the 4-gram
    assert r.target_calls_saved > 0.4


WRONG_RULES = [
    # accept exactly when the target likes x at least as much as the draft (no coin)
    AcceptRule("no-coin", lambda u, qd, qt: qt >= qd, EXACT_RULE.residual),
    # on a rejection redraw from the target itself instead of the residual
    AcceptRule("target-residual", EXACT_RULE.accept, lambda qt, qd: qt),
    # the residual without the max(0, .) clamp: negative mass clipped away only after the sum
    AcceptRule("unclamped-residual", EXACT_RULE.accept, lambda qt, qd: np.abs(qt - qd)),
]


@pytest.mark.parametrize("rule", WRONG_RULES, ids=lambda r: r.name)
def test_a_wrong_acceptance_rule_is_caught(
    draft: NGramModel, target: NGramModel, target_dist: Any, rule: AcceptRule
) -> None:
    r = speculative_sample(target, draft, [[]], T, gamma=3, num_samples=N, rng=0, rule=rule)
    fid = compare_exact(_outputs(r), target_dist, model=target)
    assert not fid.consistent
    # exact TV: far outside what N exact samples show, and the analytic surprisal test at p < 1e-6
    assert fid.sequence["tv"] > 2 * fid.sequence["tv_null_q95"]
    assert fid.surprisal is not None and fid.surprisal.p_value < 1e-6


@pytest.mark.parametrize(
    ("spec", "draft_spec"),
    [
        ("temperature:0.8+top-k:3", None),  # the same sampler on both, as the exactness argument reads
        (
            "repetition-penalty:1.5+top-p:0.9",
            "gumbel+temperature:1.5",
        ),  # a history-reading target; another draft
    ],
)
def test_the_processed_target_is_sampled_exactly(
    draft: NGramModel, target: NGramModel, spec: str, draft_spec: str | None
) -> None:
    sampler = parse_sampler_spec(spec)
    d_sampler = None if draft_spec is None else parse_sampler_spec(draft_spec)
    processed = ProcessedModel(target, sampler)
    dist = enumerate_sequences(processed, 4, threshold=0.0)
    r = speculative_sample(
        target, draft, [[]], 4, gamma=2, sampler=sampler, draft_sampler=d_sampler, num_samples=N, rng=3
    )
    fid = compare_exact(_outputs(r), dist, model=processed)
    assert fid.consistent, fid.sequence
    assert fid.sequence["outside_support"] == 0
    _check_counts(r)
    # proposal_logprobs are log q of the processed target: the enumerated probability of each output
    q_of = dict(zip(dist.keys, np.log(dist.vector()), strict=True))
    got = r.result.proposal_logprobs
    assert got is not None
    for i, out in enumerate(_outputs(r)[:200]):
        assert got[0, i] == pytest.approx(q_of[out], abs=1e-9)


def test_greedy_verification_equals_greedy_decoding_of_the_target(
    draft: NGramModel, target: NGramModel
) -> None:
    prompts = [[], target.vocab.encode("b"), target.vocab.encode("ca"), target.vocab.encode("abca")]
    want = greedy_argmax(target, prompts, 12)
    for gamma in (1, 2, 5):
        for d_sampler in (None, make_sampler()):  # a greedy draft, and a sampling one
            r = speculative_sample(
                target, draft, prompts, 12, gamma=gamma, mode="greedy", draft_sampler=d_sampler, rng=gamma
            )
            assert r.result.sequences() == want.sequences()
            np.testing.assert_array_equal(r.result.token_logprobs, want.token_logprobs)
            assert r.result.proposal_logprobs is None and r.mode == "greedy"


def test_ties_go_to_the_lowest_id_as_in_greedy() -> None:
    flat = CallableModel(lambda prefixes: np.zeros((len(prefixes), 4)), vocab_size=4)
    skewed = CallableModel(lambda prefixes: np.log([[0.1, 0.2, 0.3, 0.4]] * len(prefixes)), vocab_size=4)
    r = speculative_sample(flat, skewed, [[1]], 6, mode="greedy")
    assert r.result.best() == greedy_argmax(flat, [[1]], 6).best() == [[0] * 6]
    assert r.accepted == 0  # the draft always proposes 3, the target's argmax is 0


def test_runs_are_reproducible_and_do_not_depend_on_the_batch(draft: NGramModel, target: NGramModel) -> None:
    a = speculative_sample(target, draft, [[]], 8, num_samples=64, rng=11)
    b = speculative_sample(target, draft, [[]], 8, num_samples=64, rng=11)
    assert a.result.sequences() == b.result.sequences() and a.stats() == b.stats()
    # row 0 decoded alone, keyed by the same (seed, row 0, step, lane), gives the same tokens
    alone = speculative_sample(target, draft, [[]], 8, num_samples=1, rng=11)
    assert alone.result.sequences()[0][0] == a.result.sequences()[0][0]
    assert (
        speculative_sample(target, draft, [[]], 8, num_samples=64, rng=12).result.sequences()
        != a.result.sequences()
    )


def test_a_draft_equal_to_the_target_is_always_accepted(target: NGramModel) -> None:
    r = speculative_sample(target, target, [[]], 8, gamma=3, num_samples=500, rng=0)
    assert r.residual == 0 and r.accepted == r.tested > 0
    assert r.acceptance_rate == 1.0
    # with gamma = max_new_tokens - 1 the proposals are the draft's own ancestral draws (lanes 0..)
    s = speculative_sample(target, target, [[]], 4, gamma=3, num_samples=500, rng=5)
    anc = ancestral_sample(target, [[]], 4, num_samples=500, rng=5)
    same = [x for x, y in zip(s.result.sequences()[0], anc.sequences()[0], strict=True) if x[:3] == y[:3]]
    assert len(same) == 500


def test_a_draft_with_another_vocabulary_is_refused(target: NGramModel) -> None:
    other = NGramModel.from_text("wxyz\nzy\n", n=2)  # 4 symbols + 3 specials: another size
    with pytest.raises(VocabMismatchError, match=r"vocabulary \(7 ids\) is not the target's \(6 ids\)"):
        speculative_sample(target, other, [[]], 4)
    renamed = NGramModel.from_text("xyz\n", n=2)  # 3 symbols too, but x, y, z are not a, b, c
    assert renamed.vocab_size == target.vocab_size
    with pytest.raises(
        VocabMismatchError, match=r"different tokens .id 3 is 'x' in the draft, 'a' in the target"
    ):
        check_same_vocabulary(renamed, target)
    no_eos = CallableModel(lambda p: np.zeros((len(p), target.vocab_size)), vocab_size=target.vocab_size)
    with pytest.raises(VocabMismatchError, match="ends sequences with token None and the target with 0"):
        speculative_sample(target, no_eos, [[]], 4)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"gamma": 0}, "gamma .* must be an integer >= 1"),
        ({"gamma": 1.5}, "gamma .* must be an integer >= 1"),
        ({"num_samples": 0}, "num_samples must be an integer >= 1"),
        ({"mode": "beam"}, "mode must be 'sample' or 'greedy'"),
        (
            {"mode": "greedy", "sampler": make_sampler(top_k=2)},
            "greedy verification .* takes no target sampler",
        ),
        ({"sampler": make_sampler(mirostat=2, mirostat_tau=3.0)}, "mirostat"),
        ({"draft_sampler": object()}, "needs a faithful sampler for the draft"),
    ],
)
def test_bad_arguments_are_clear_errors(
    draft: NGramModel, target: NGramModel, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(FaithfulError, match=message):
        speculative_sample(target, draft, [[]], 4, **kwargs)


def test_max_new_tokens_is_respected_and_eos_ends_rows(draft: NGramModel, target: NGramModel) -> None:
    for limit in (1, 2, 7):
        r = speculative_sample(target, draft, [[]], limit, gamma=4, num_samples=300, rng=limit)
        assert int(r.result.lengths.max()) <= limit
        for seq, fin in zip(r.result.sequences()[0], r.result.finished[0], strict=True):
            assert (seq[-1] == target.eos_token_id) == bool(fin)
            assert target.eos_token_id not in seq[:-1]  # nothing after an EOS
    with pytest.raises(SamplingParameterError):
        speculative_sample(target, draft, [[]], 4, sampler=make_sampler(mirostat=1, mirostat_tau=2.0))


def test_docstring_examples() -> None:
    import doctest

    import faithful.decode.speculative as module

    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 2 and result.failed == 0


def test_rounds_in_bounded_batches_give_the_same_samples(
    draft: NGramModel, target: NGramModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    import faithful.decode._speculative_run as spec

    whole = speculative_sample(target, draft, [[], [3]], 8, gamma=3, num_samples=100, rng=4)
    # a vocabulary of 6 and gamma 3: 8 * 6 * 8 bytes per row, so 7 rows per round
    monkeypatch.setattr(spec, "_ROUND_BYTES", 8 * 6 * 8 * 7)
    pieces = speculative_sample(target, draft, [[], [3]], 8, gamma=3, num_samples=100, rng=4)
    assert pieces.result.sequences() == whole.result.sequences() and pieces.stats() == whole.stats()


class _Tokenized:
    """Just what the vocabulary check reads of a Hugging Face model: sizes, EOS and ``tokenizer.tokenizer``."""

    def __init__(self, strings: list[str], vocab_size: int = 6) -> None:
        self.vocab_size, self.eos_token_id = vocab_size, 0
        get_vocab = {s: i for i, s in enumerate(strings)}
        self.tokenizer = type(
            "W", (), {"tokenizer": type("T", (), {"get_vocab": lambda _self: get_vocab})()}
        )()


def test_token_strings_are_compared_within_one_kind_of_vocabulary(target: NGramModel) -> None:
    check_same_vocabulary(_Tokenized(list("abcdef")), _Tokenized(list("abcdef")))
    # a tokenizer with one string fewer: named at the id where it ends, not a StopIteration
    with pytest.raises(VocabMismatchError, match=r"id 5 is '<none>' in the draft, 'f' in the target"):
        check_same_vocabulary(_Tokenized(list("abcde")), _Tokenized(list("abcdef")))
    # an n-gram over a tokenizer's ids spells tokens as ids: only sizes and EOS can be compared
    check_same_vocabulary(target, _Tokenized(list("uvwxyz")))
