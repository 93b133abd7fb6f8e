"""Chains: Viterbi and forward against hmmlearn, marginals/k-best against brute force, FFBS by chi-square."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from faithful.chains import (
    ChainError,
    LinearChain,
    forward_scores,
    hmm_chain,
    kbest_paths,
    log_partition,
    path_score,
    posterior_marginals,
    sample_paths,
    viterbi,
)
from faithful.kernels import available
from faithful.models import HMMModel
from scipy.stats import chisquare

hmm = pytest.importorskip("hmmlearn.hmm")


def random_hmm(s: int, v: int, seed: int, sparse: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    pi = rng.dirichlet(np.ones(s))
    a = rng.dirichlet(np.ones(s) * 0.5, size=s)
    b = rng.dirichlet(np.ones(v) * 0.5, size=s)
    if sparse:  # structural zeros exercise -inf handling
        a[0, 1:] = 0.0
        a[0, 0] = 1.0
    return pi, a, b


def fitted(pi: np.ndarray, a: np.ndarray, b: np.ndarray) -> object:
    m = hmm.CategoricalHMM(n_components=len(pi), n_features=b.shape[1])
    m.startprob_, m.transmat_, m.emissionprob_ = pi, a, b
    return m


KERNELS = [
    "numpy",
    pytest.param("numba", marks=pytest.mark.skipif(not available(), reason="numba not installed")),
]


@pytest.mark.parametrize("kernels", KERNELS)
@pytest.mark.parametrize(
    ("s", "v", "t", "seed"), [(3, 4, 12, 0), (8, 5, 200, 1), (16, 6, 500, 2), (5, 3, 40, 3)]
)
def test_viterbi_and_forward_equal_hmmlearn(s: int, v: int, t: int, seed: int, kernels: str) -> None:
    pi, a, b = random_hmm(s, v, seed, sparse=seed == 3)
    m = fitted(pi, a, b)
    obs = np.random.default_rng(seed + 10).integers(0, v, size=t)
    ref_lp, ref_path = m.decode(obs[:, None], algorithm="viterbi")
    chain = hmm_chain(pi, a, b, [obs])
    vit = viterbi(chain, kernels=kernels)
    assert vit.paths[0].tolist() == ref_path.tolist()
    assert vit.scores[0] == pytest.approx(ref_lp, rel=1e-10, abs=1e-9)
    assert log_partition(chain, kernels=kernels)[0] == pytest.approx(
        m.score(obs[:, None]), rel=1e-10, abs=1e-9
    )
    np.testing.assert_allclose(posterior_marginals(chain)[0], m.predict_proba(obs[:, None]), atol=1e-9)


def test_batched_ragged_rows_equal_one_at_a_time() -> None:
    pi, a, b = random_hmm(4, 3, 5)
    rng = np.random.default_rng(0)
    seqs = [rng.integers(0, 3, size=n).tolist() for n in (7, 1, 4, 7)]
    batch = hmm_chain(pi, a, b, seqs)
    vb, zb, mb = viterbi(batch), log_partition(batch), posterior_marginals(batch)
    kb = kbest_paths(batch, 3)
    for i, s in enumerate(seqs):
        one = hmm_chain(pi, a, b, [s])
        v1 = viterbi(one)
        assert vb.paths[i, : len(s)].tolist() == v1.paths[0].tolist()
        assert np.all(vb.paths[i, len(s) :] == -1)
        assert vb.scores[i] == pytest.approx(v1.scores[0])
        assert zb[i] == pytest.approx(log_partition(one)[0])
        np.testing.assert_allclose(mb[i, : len(s)], posterior_marginals(one)[0], atol=1e-12)
        np.testing.assert_allclose(kb.scores[i], kbest_paths(one, 3).scores[0], atol=1e-10)


def brute_force(chain: LinearChain) -> dict[tuple[int, ...], float]:
    s, t = chain.num_states, int(chain.lengths[0])
    out = {}
    for z in itertools.product(range(s), repeat=t):
        out[z] = float(path_score(chain, np.array([list(z) + [-1] * (chain.num_steps - t)]))[0])
    return out


@pytest.mark.parametrize("per_step", [False, True])
def test_linear_chain_crf_against_brute_force(per_step: bool) -> None:
    rng = np.random.default_rng(7)
    s, t = 3, 5
    em = rng.normal(size=(t, s)) * 2
    tr = rng.normal(size=(1, t - 1, s, s)) * 2 if per_step else rng.normal(size=(s, s)) * 2
    chain = LinearChain.create(em, tr, initial=rng.normal(size=s))
    paths = brute_force(chain)
    scores = np.array(list(paths.values()))
    log_z = np.logaddexp.reduce(scores)
    assert log_partition(chain)[0] == pytest.approx(log_z, rel=1e-12)
    best = max(paths, key=paths.__getitem__)
    assert tuple(viterbi(chain).paths[0]) == best
    kb = kbest_paths(chain, 6)
    expected = sorted(scores, reverse=True)[:6]
    np.testing.assert_allclose(kb.scores[0], expected, rtol=1e-12)
    assert len({tuple(p) for p in kb.paths[0]}) == 6
    np.testing.assert_allclose(path_score(chain, kb.paths)[0], kb.scores[0], rtol=1e-12)
    marg = np.zeros((t, s))
    for z, sc in paths.items():
        for i, st in enumerate(z):
            marg[i, st] += np.exp(sc - log_z)
    np.testing.assert_allclose(posterior_marginals(chain)[0], marg, atol=1e-12)


def test_extreme_scores_fall_back_to_exact_log_sum_exp() -> None:
    em = np.array([[0.0, 0.0], [0.0, 0.0]])
    tr = np.array([[0.0, -2000.0], [-2000.0, 0.0]])
    chain = LinearChain.create(em, tr, initial=[0.0, -1500.0])
    expected = np.logaddexp.reduce([0.0, -2000.0, -3500.0, -1500.0])
    assert log_partition(chain)[0] == pytest.approx(expected)


def test_ffbs_samples_the_exact_posterior() -> None:
    pi, a, b = random_hmm(3, 3, 11)
    obs = [0, 2, 1, 1]
    chain = hmm_chain(pi, a, b, [obs, [2, 2]])
    n = 20_000
    res = sample_paths(chain, num_samples=n, rng=42)
    exact = brute_force(LinearChain.create(chain.emissions[:1], chain.transitions, chain.initial[:1]))
    log_z = log_partition(chain)[0]
    keys = sorted(exact)
    got = [tuple(p) for p in res.paths[0]]
    counts = np.array([got.count(k) for k in keys])
    expected = np.array([np.exp(exact[k] - log_z) for k in keys]) * n
    assert chisquare(counts, expected).pvalue > 1e-3
    np.testing.assert_allclose(res.logprobs[0, :5], [exact[got[i]] - log_z for i in range(5)], atol=1e-12)
    assert np.all(res.paths[1, :, 2:] == -1)
    again = sample_paths(chain, num_samples=n, rng=42)
    np.testing.assert_array_equal(res.paths, again.paths)


def test_hmm_model_and_chain_agree_on_likelihood() -> None:
    pi, a, b = random_hmm(4, 5, 3)
    obs = [1, 4, 0, 2]
    model = HMMModel(pi, a, b)
    from faithful.decode import score_sequences

    lp = score_sequences(model, [[]], [[obs]])[0, 0]
    assert lp == pytest.approx(log_partition(hmm_chain(pi, a, b, [obs]))[0], rel=1e-12)


def test_chain_errors() -> None:
    with pytest.raises(ChainError, match="transitions"):
        LinearChain.create(np.zeros((3, 2)), np.zeros((3, 3)))
    with pytest.raises(ChainError, match="lengths"):
        LinearChain.create(np.zeros((3, 2)), np.zeros((2, 2)), lengths=[4])
    with pytest.raises(ChainError, match="NaN"):
        LinearChain.create(np.full((3, 2), np.nan), np.zeros((2, 2)))
    with pytest.raises(ChainError, match="at least one"):
        hmm_chain([1.0], [[1.0]], [[1.0]], [[]])
    with pytest.raises(ChainError, match="symbols"):
        hmm_chain([1.0], [[1.0]], [[1.0]], [[3]])
    c = LinearChain.create(np.zeros((2, 2)), np.zeros((2, 2)))
    with pytest.raises(ChainError):
        kbest_paths(c, 0)
    with pytest.raises(ChainError):
        sample_paths(c, 0)
    assert kbest_paths(c, 6).scores[0, 4] == -np.inf  # only 4 paths exist


def test_viterbi_logprob_is_the_posterior_of_the_path() -> None:
    pi, a, b = random_hmm(3, 4, 1)
    chain = hmm_chain(pi, a, b, [[0, 1, 2, 3]])
    v = viterbi(chain)
    assert v.logprobs[0] == pytest.approx(v.scores[0] - log_partition(chain)[0])
    assert v.logprobs[0] <= 0


def random_chain(shape: str, seed: int, lengths: list[int], s: int = 7, t: int = 30) -> LinearChain:
    rng = np.random.default_rng(seed)
    b = len(lengths)
    em = rng.normal(size=(b, t, s)) * 3
    size = {"shared": (s, s), "per_row": (b, s, s), "per_step": (b, t - 1, s, s)}[shape]
    tr = rng.normal(size=size) * 3
    tr = np.where(rng.random(size) < 0.25, -np.inf, tr)  # structural zeros
    em[0, 2] = -np.inf  # a dead state at one position
    return LinearChain.create(em, tr, initial=np.round(rng.normal(size=s)), lengths=lengths)


@pytest.mark.skipif(not available(), reason="numba not installed")
@pytest.mark.parametrize("shape", ["shared", "per_row", "per_step"])
@pytest.mark.parametrize("lengths", [[30], [1], [30, 1, 12, 30, 2], [2, 2]])
def test_compiled_chains_equal_the_numpy_reference(shape: str, lengths: list[int]) -> None:
    for seed in range(3):
        c = random_chain(shape, seed, lengths)
        # max-product: one addition per candidate and an exact max, so bit for bit
        np.testing.assert_array_equal(
            forward_scores(c, "max", kernels="numba"), forward_scores(c, "max", kernels="numpy")
        )
        fast, ref = viterbi(c, kernels="numba"), viterbi(c, kernels="numpy")
        np.testing.assert_array_equal(fast.paths, ref.paths)
        np.testing.assert_array_equal(fast.scores, ref.scores)
        # sum-product: the same shifted exp -> matmul -> log, products summed in another order
        a, r = forward_scores(c, "log", kernels="numba"), forward_scores(c, "log", kernels="numpy")
        np.testing.assert_array_equal(np.isfinite(a), np.isfinite(r))
        np.testing.assert_allclose(a[np.isfinite(r)], r[np.isfinite(r)], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(
            log_partition(c, kernels="numba"), log_partition(c, kernels="numpy"), rtol=1e-12
        )


@pytest.mark.skipif(not available(), reason="numba not installed")
def test_compiled_viterbi_breaks_ties_to_the_lowest_state() -> None:
    # every path ties: the lowest state wins each argmax, on both paths (hmmlearn picks differently
    # on such exact ties: [2, 2, 2, 2, 0] for a uniform 3-state HMM, so it is no oracle here)
    c = LinearChain.create(np.zeros((6, 4)), np.zeros((4, 4)))
    assert (
        viterbi(c, kernels="numba").paths.tolist() == [[0] * 6] == viterbi(c, kernels="numpy").paths.tolist()
    )
    c = LinearChain.create(
        np.zeros((5, 3)), np.log(np.full((3, 3), 1 / 3)), initial=np.log(np.full(3, 1 / 3))
    )
    assert (
        viterbi(c, kernels="numba").paths.tolist() == [[0] * 5] == viterbi(c, kernels="numpy").paths.tolist()
    )


@pytest.mark.skipif(not available(), reason="numba not installed")
def test_compiled_forward_falls_back_to_log_sum_exp_on_extreme_spreads() -> None:
    em = np.array([[0.0, 0.0], [0.0, 0.0]])
    tr = np.array([[0.0, -2000.0], [-2000.0, 0.0]])
    chain = LinearChain.create(em, tr, initial=[0.0, -1500.0])
    expected = np.logaddexp.reduce([0.0, -2000.0, -3500.0, -1500.0])
    assert log_partition(chain, kernels="numba")[0] == pytest.approx(expected, rel=1e-15)


def test_chain_kernels_argument_is_checked() -> None:
    c = LinearChain.create(np.zeros((2, 2)), np.zeros((2, 2)))
    with pytest.raises(ChainError, match="kernels"):
        viterbi(c, kernels="cuda")
    with pytest.raises(ChainError, match="kernels"):
        log_partition(c, kernels="")


def test_numpy_chains_do_not_import_the_kernels() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import numpy as np\n"
        "from faithful.chains import LinearChain, viterbi, log_partition\n"
        "c = LinearChain.create(np.zeros((3, 2)), np.zeros((2, 2)))\n"
        "viterbi(c, kernels='numpy'); log_partition(c, kernels='numpy')\n"
        "bad = [m for m in sys.modules if m.startswith(('numba', 'faithful.kernels._'))]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_without_numba_the_numpy_path_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    import faithful.kernels

    monkeypatch.setattr(faithful.kernels, "available", lambda: False)
    monkeypatch.setattr(faithful.kernels, "chain_forward_max", _must_not_run)
    monkeypatch.setattr(faithful.kernels, "chain_forward_sum", _must_not_run)
    monkeypatch.setattr(faithful.kernels, "chain_backtrack", _must_not_run)
    pi, a, b = random_hmm(4, 3, 2)
    c = hmm_chain(pi, a, b, [[0, 1, 2, 1]])
    assert viterbi(c).paths.tolist() == viterbi(c, kernels="numpy").paths.tolist()
    assert log_partition(c)[0] == log_partition(c, kernels="numpy")[0]
    with pytest.raises(ChainError, match="needs numba"):
        viterbi(c, kernels="numba")


def _must_not_run(*args: object) -> None:
    raise AssertionError("a compiled kernel ran although numba is reported missing")
