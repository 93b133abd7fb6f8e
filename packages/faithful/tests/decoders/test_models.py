"""The model protocol and its numpy adapters: callable, n-gram, HMM."""

from __future__ import annotations

import numpy as np
import pytest
from faithful import FaithfulError
from faithful.models import (
    CallableModel,
    EmptyPromptError,
    HMMModel,
    LanguageModel,
    ModelError,
    NGramModel,
    Vocab,
    VocabMismatchError,
)

TEXT = "the cat sat\nthe dog sat\nthe cat ran\n"


def test_adapters_satisfy_the_protocol() -> None:
    models = [
        CallableModel(lambda p: np.zeros((len(p), 4)), vocab_size=4),
        NGramModel.from_text(TEXT, n=2),
        HMMModel([1.0], [[1.0]], [[0.5, 0.5]]),
    ]
    for m in models:
        assert isinstance(m, LanguageModel)


def test_callable_model_normalises_and_checks_shape() -> None:
    m = CallableModel(lambda p: np.array([[1.0, 2.0, 3.0]] * len(p)), vocab_size=3)
    lp = m.next_logprobs(m.start([[0], [1, 2]]))
    assert lp.dtype == np.float64 and lp.shape == (2, 3)
    np.testing.assert_allclose(np.exp(lp).sum(axis=1), 1.0)
    bad = CallableModel(lambda p: np.zeros((len(p), 2)), vocab_size=3)
    with pytest.raises(ModelError, match="expected"):
        bad.next_logprobs(bad.start([[0]]))


def test_callable_state_advance_select() -> None:
    m = CallableModel(lambda p: np.zeros((len(p), 3)), vocab_size=3)
    s = m.advance(m.start([[0], [1]]), np.array([2, 1]))
    assert s.prefixes == ((0, 2), (1, 1))
    assert m.select(s, np.array([1, 1, 0])).prefixes == ((1, 1), (1, 1), (0, 2))


def test_prompt_errors_are_faithful_errors() -> None:
    m = CallableModel(lambda p: np.zeros((len(p), 3)), vocab_size=3, allow_empty_prompt=False)
    with pytest.raises(EmptyPromptError):
        m.start([[]])
    with pytest.raises(VocabMismatchError, match="outside"):
        m.start([[5]])
    with pytest.raises(ModelError):
        m.start([])
    assert issubclass(EmptyPromptError, FaithfulError)


@pytest.mark.parametrize("level", ["char", "word"])
@pytest.mark.parametrize("smoothing", ["witten-bell", "add-k"])
@pytest.mark.parametrize("n", [1, 2, 3])
def test_ngram_rows_are_distributions(level: str, smoothing: str, n: int) -> None:
    m = NGramModel.from_text(TEXT, n=n, level=level, smoothing=smoothing)  # type: ignore[arg-type]
    prompts = [[], m.vocab.encode("the"), m.vocab.encode("zzz qq")]
    p = np.exp(m.next_logprobs(m.start(prompts)))
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-12)
    assert np.all(p[:, m.vocab.bos_id] == 0)
    assert np.all(np.delete(p, m.vocab.bos_id, axis=1) > 0)  # smoothing: every other id is possible


def test_ngram_learns_counts() -> None:
    m = NGramModel.from_text(TEXT, n=2, level="word")
    p = np.exp(m.next_logprobs(m.start([m.vocab.encode("the")])))[0]
    cat, dog = m.vocab.index["cat"], m.vocab.index["dog"]
    assert p[cat] > p[dog] > p[m.vocab.index["sat"]]
    after_sat = np.exp(m.next_logprobs(m.start([m.vocab.encode("the cat sat")])))[0]
    assert after_sat.argmax() == m.vocab.eos_id


def test_ngram_state_keeps_last_n_minus_1() -> None:
    m = NGramModel.from_text("abcabc\n", n=3)
    s = m.start([m.vocab.encode("ab")])
    s = m.advance(s, np.array([m.vocab.index["c"]]))
    assert s.contexts == ((m.vocab.index["b"], m.vocab.index["c"]),)


def test_vocab_round_trip_and_errors() -> None:
    v = Vocab(["hello", "world"], level="word")
    assert v.decode(v.encode("hello world")) == "hello world"
    assert v.encode("hello mars") == [3, v.unk_id]
    with pytest.raises(VocabMismatchError):
        v.decode([99])
    with pytest.raises(ModelError, match="level"):
        Vocab([], level="byte")  # type: ignore[arg-type]
    with pytest.raises(ModelError, match="no tokens"):
        NGramModel.from_text("\n\n", n=2)
    with pytest.raises(ModelError, match="n must be"):
        NGramModel.from_text("ab", n=0)


def test_hmm_next_logprobs_match_brute_force() -> None:
    rng = np.random.default_rng(0)
    s, v = 3, 4
    pi = rng.dirichlet(np.ones(s))
    a = rng.dirichlet(np.ones(s), size=s)
    b = rng.dirichlet(np.ones(v), size=s)
    m = HMMModel(pi, a, b)
    obs = [2, 0, 3]
    lp = m.next_logprobs(m.start([obs]))[0]
    # brute force: P(x_1..x_4) / P(x_1..x_3) by summing over hidden paths
    import itertools

    def joint(xs: list[int]) -> float:
        total = 0.0
        for zs in itertools.product(range(s), repeat=len(xs)):
            p = pi[zs[0]] * b[zs[0], xs[0]]
            for t in range(1, len(xs)):
                p *= a[zs[t - 1], zs[t]] * b[zs[t], xs[t]]
            total += p
        return total

    expected = np.array([joint([*obs, x]) for x in range(v)]) / joint(obs)
    np.testing.assert_allclose(np.exp(lp), expected, rtol=1e-10)


def test_hmm_rejects_bad_parameters_and_impossible_prompts() -> None:
    with pytest.raises(ModelError, match="rows summing"):
        HMMModel([0.5, 0.6], [[1, 0], [0, 1]], [[1, 0], [0, 1]])
    with pytest.raises(ModelError, match="shape"):
        HMMModel([1.0], [[1.0, 0.0]], [[1.0]])
    m = HMMModel([1.0, 0.0], [[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [0.0, 1.0]])
    with pytest.raises(ModelError, match="probability zero"):
        m.start([[1]])


def test_a_single_prompt_instead_of_a_batch_is_a_clear_error() -> None:
    m = CallableModel(lambda p: np.zeros((len(p), 3)), vocab_size=3)
    with pytest.raises(ModelError, match="batch"):
        m.start([1, 2])  # type: ignore[list-item]
    with pytest.raises(ModelError, match="batch"):
        m.start("ab")  # type: ignore[arg-type]
