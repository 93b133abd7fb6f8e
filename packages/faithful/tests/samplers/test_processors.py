from __future__ import annotations

import numpy as np
import pytest
from faithful.errors import EmptySupportError, SamplingParameterError, ShapeMismatchError
from faithful.processors import (
    AllowedTokens,
    Epsilon,
    Eta,
    ForbiddenTokens,
    LogitBias,
    MinP,
    NoRepeatNGram,
    OccurrencePenalty,
    Processor,
    RepetitionPenalty,
    Temperature,
    TopK,
    TopNSigma,
    TopP,
    Typical,
    apply_processors,
    check_logits,
    softmax,
    top_p_threshold,
)
from faithful.samplers import make_sampler

P = np.array([[0.4, 0.25, 0.15, 0.1, 0.06, 0.04]])
Z = np.log(P)


def kept(z: np.ndarray) -> list[list[int]]:
    return [np.flatnonzero(np.isfinite(row)).tolist() for row in z]


# ---------------------------------------------------------------- hand-computed kept sets


@pytest.mark.parametrize(
    ("proc", "expected"),
    [
        (TopK(1), [0]),
        (TopK(3), [0, 1, 2]),
        (TopK(100), [0, 1, 2, 3, 4, 5]),
        (TopP(0.4), [0]),  # mass exactly 0.4 reached by the first token
        (TopP(0.41), [0, 1]),
        (TopP(0.8), [0, 1, 2]),
        (TopP(0.81), [0, 1, 2, 3]),
        (TopP(1.0), [0, 1, 2, 3, 4, 5]),
        (MinP(0.25), [0, 1, 2, 3]),  # p >= 0.1
        (MinP(0.26), [0, 1, 2]),
        (MinP(0.0), [0, 1, 2, 3, 4, 5]),
        (Epsilon(0.1), [0, 1, 2, 3]),
        (Epsilon(0.5), [0]),
        (TopNSigma(0.0), [0]),
        (Temperature(0.0), [0]),
    ],
)
def test_hand_computed_kept_sets(proc: Processor, expected: list[int]) -> None:
    assert kept(proc(Z)) == [expected]


def test_top_p_keeps_every_token_tied_at_the_boundary() -> None:
    # Deliberate difference from Hugging Face, which keeps an arbitrary one of two tied tokens.
    z = np.log(np.array([[0.4, 0.2, 0.2, 0.2]]))
    assert kept(TopP(0.5)(z)) == [[0, 1, 2, 3]]
    assert kept(TopP(0.4)(z)) == [[0]]


def test_top_k_keeps_ties_like_hugging_face() -> None:
    assert kept(TopK(2)(np.array([[1.0, 2.0, 1.0, 0.0]]))) == [[0, 1, 2]]


def test_temperature_zero_is_uniform_over_ties() -> None:
    z = Temperature(0.0)(np.array([[1.0, 3.0, 3.0, -np.inf]]))
    np.testing.assert_allclose(softmax(z), [[0.0, 0.5, 0.5, 0.0]])


def test_temperature_scales() -> None:
    # shifted by the row max before dividing: the same distribution as z / T
    np.testing.assert_allclose(Temperature(2.0)(np.array([[2.0, -4.0]])), [[0.0, -3.0]])


def _exact_tempered_q(z: np.ndarray, t: float) -> np.ndarray:
    """softmax(z / t) per row at 50 digits (mpmath), rounded once to float64."""
    import mpmath

    with mpmath.workdps(50):
        out = []
        for row in z:
            m = max(mpmath.mpf(float(x)) for x in row if np.isfinite(x))
            e = [
                mpmath.exp((mpmath.mpf(float(x)) - m) / mpmath.mpf(t)) if np.isfinite(x) else mpmath.mpf(0)
                for x in row
            ]
            s = mpmath.fsum(e)
            out.append([float(x / s) for x in e])
    return np.array(out)


@pytest.mark.parametrize("t", [0.7, 0.3, 1.7, 1e-3])
@pytest.mark.parametrize("scale", [1e12, -1e12, 3e15])
def test_temperature_is_exact_for_huge_logits(t: float, scale: float) -> None:
    # Issue 13 bug 4: z / T rounded each logit relative to its own size, so logits near 1e12
    # moved q by ~2e-5. Shifting by the row max first keeps q exact to float64 rounding.
    offsets = np.array([[0.0, 1.0, 2.0, -3.0, -np.inf, 0.5], [7.0, -1.0, 0.0, 2.0, 3.0, 1.0]])
    z = scale + offsets  # representable: the offsets are multiples of the ulp at these scales
    assert np.array_equal(z - scale, offsets)
    expected = _exact_tempered_q(z, t)
    np.testing.assert_allclose(softmax(Temperature(t)(z)), expected, rtol=1e-13, atol=1e-300)
    for fast in (True, False):
        s = make_sampler(temperature=t, fast=fast)
        np.testing.assert_allclose(s.distribution(z), expected, rtol=1e-13, atol=1e-300)
        r = s(z, rng=3, return_q=True)
        assert r.q is not None
        np.testing.assert_allclose(r.q, expected, rtol=1e-13, atol=1e-300)
        np.testing.assert_allclose(
            r.logprobs, np.log(expected[np.arange(2), r.tokens]), rtol=1e-12, atol=1e-15
        )
    for extra in ({"top_p": 0.9}, {"min_p": 0.05}, {"top_k": 3}, {"top_k": 4, "top_p": 0.95, "min_p": 0.01}):
        fast_q = make_sampler(temperature=t, **extra)(z, rng=1, return_q=True).q
        ref_q = make_sampler(temperature=t, fast=False, **extra).distribution(z)
        np.testing.assert_allclose(fast_q, ref_q, rtol=1e-13, atol=1e-300)


def test_typical_hand_computed() -> None:
    # p = [0.7, 0.2, 0.1]: H ~ 0.80 nats; distances: 0.44, 0.81, 1.50 -> token 0 first
    z2 = np.log(np.array([[0.7, 0.2, 0.1]]))
    assert kept(Typical(0.5)(z2)) == [[0]]
    assert kept(Typical(0.75)(z2)) == [[0, 1]]


def test_eta_hand_computed() -> None:
    # peaked: H ~ 0.36 nats, the cut is epsilon itself
    p = np.array([[0.9, 0.09, 0.01]])
    assert kept(Eta(0.5)(np.log(p))) == [[0]]  # cut = min(0.5, 0.707 * 0.70) = 0.495
    assert kept(Eta(0.05)(np.log(p))) == [[0, 1]]
    # broad: H ~ 2.23 nats, the entropy term cuts lower than epsilon would
    broad = np.array([[0.2] + [0.1] * 7 + [0.05, 0.05]])
    h = -(broad * np.log(broad)).sum()
    assert np.sqrt(0.09) * np.exp(-h) < 0.05 < 0.09
    assert kept(Eta(0.09)(np.log(broad))) == [list(range(10))]
    assert kept(Epsilon(0.09)(np.log(broad))) == [list(range(8))]


def test_penalties_and_masks_hand_computed() -> None:
    z = np.array([[2.0, -2.0, 1.0, 0.5]])
    np.testing.assert_allclose(RepetitionPenalty(2.0)(z, [[0, 1, 1]]), [[1.0, -4.0, 1.0, 0.5]])
    np.testing.assert_allclose(OccurrencePenalty(0.5, 0.25)(z, [[1, 1, 3]]), [[2.0, -3.0, 1.0, -0.25]])
    np.testing.assert_allclose(LogitBias({2: 1.0, 3: -np.inf})(z), [[2.0, -2.0, 2.0, -np.inf]])
    assert kept(AllowedTokens([1, 3])(z)) == [[1, 3]]
    assert kept(ForbiddenTokens([1, 3])(z)) == [[0, 2]]
    assert kept(NoRepeatNGram(2)(np.zeros((1, 4)), [[1, 2, 3, 1]])) == [[0, 1, 3]]
    assert kept(NoRepeatNGram(3)(np.zeros((1, 4)), [[1, 2, 3, 1, 2]])) == [[0, 1, 2]]
    assert kept(NoRepeatNGram(1)(np.zeros((1, 4)), [[1, 2]])) == [[0, 3]]
    assert kept(NoRepeatNGram(3)(np.zeros((1, 4)), [[1]])) == [[0, 1, 2, 3]]


def test_top_n_sigma_is_temperature_invariant() -> None:
    z = np.random.default_rng(1).standard_normal((5, 50)) * 3
    for t in (0.3, 1.0, 4.0):
        assert kept(TopNSigma(1.5)(Temperature(t)(z))) == kept(TopNSigma(1.5)(z))


# ---------------------------------------------------------------- properties on random rows


def random_logits(seed: int, b: int = 16, v: int = 300, scale: float = 3.0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((b, v)) * scale


ALL = [
    Temperature(0.7),
    Temperature(0.0),
    TopK(10),
    TopP(0.9),
    TopP(0.3),
    MinP(0.05),
    Typical(0.9),
    Epsilon(0.003),
    Eta(0.01),
    TopNSigma(1.0),
    RepetitionPenalty(1.3),
    OccurrencePenalty(0.5, 0.2),
    NoRepeatNGram(2),
    LogitBias({0: 2.0, 5: -np.inf}),
    AllowedTokens(range(0, 300, 2)),
    ForbiddenTokens([1, 2, 3]),
]
HISTORY = [[int(t) for t in np.random.default_rng(r).integers(0, 300, 12)] for r in range(16)]


@pytest.mark.parametrize("proc", ALL, ids=lambda p: p.name)
def test_never_mutates_and_is_batch_invariant(proc: Processor) -> None:
    z = random_logits(3)
    z[0, :5] = -np.inf
    before = z.copy()
    out = proc(z, HISTORY)
    np.testing.assert_array_equal(z, before)
    assert out is not z
    assert np.isfinite(out.max(axis=1)).all()
    for row in (0, 7, 15):
        alone = proc(z[row : row + 1], HISTORY[row : row + 1])
        np.testing.assert_array_equal(alone[0], out[row])


@pytest.mark.parametrize("proc", [TopK(10), TopP(0.9), MinP(0.1), Typical(0.5), Epsilon(0.01), Eta(0.05)])
def test_truncations_only_remove_tokens(proc: Processor) -> None:
    z = random_logits(4)
    out = proc(z)
    finite = np.isfinite(out)
    np.testing.assert_array_equal(out[finite], z[finite])
    assert finite.any(axis=1).all()
    if not isinstance(proc, Typical):  # typical sampling may drop the most likely token, by design
        assert finite[np.arange(z.shape[0]), z.argmax(axis=1)].all()


def test_top_p_kept_set_is_the_smallest_superlevel_set_reaching_p() -> None:
    z = random_logits(5, b=32, v=500)
    p = softmax(z)
    for top_p in (0.05, 0.5, 0.9, 0.999):
        keep = np.isfinite(TopP(top_p)(z))
        for row in range(z.shape[0]):
            mass = p[row][keep[row]].sum()
            smallest_kept = p[row][keep[row]].min()
            assert mass >= top_p - 1e-12
            # dropping the least likely kept level would fall short of top_p
            assert mass - p[row][p[row] == smallest_kept].sum() < top_p
            assert (p[row][~keep[row]] < smallest_kept).all()


def test_top_p_threshold_does_not_depend_on_the_candidate_window() -> None:
    z = random_logits(6, b=8, v=2000, scale=1.0)
    for top_p in (0.1, 0.9, 0.99):
        ref = top_p_threshold(z, top_p, first_k=2000)
        for k in (1, 7, 256):
            np.testing.assert_array_equal(top_p_threshold(z, top_p, first_k=k), ref)


def test_apply_processors_returns_a_new_array() -> None:
    z = random_logits(7)
    out = apply_processors(z, [])
    assert out is not z
    np.testing.assert_array_equal(out, z)


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: TopP(1.5), r"`top_p` must be in \(0, 1\], got 1.5"),
        (lambda: TopP(0.0), "top_p"),
        (lambda: TopK(0), "top_k"),
        (lambda: TopK(2.5), "top_k"),
        (lambda: MinP(-0.1), "min_p"),
        (lambda: Typical(0), "typical_p"),
        (lambda: Epsilon(1.0), "epsilon"),
        (lambda: Eta(0.0), "eta"),
        (lambda: TopNSigma(-1), "top_n_sigma"),
        (lambda: Temperature(-1), "temperature"),
        (lambda: Temperature(float("nan")), "temperature"),
        (lambda: RepetitionPenalty(0), "repetition_penalty"),
        (lambda: OccurrencePenalty(float("inf"), 0), "presence_penalty"),
        (lambda: NoRepeatNGram(0), "no_repeat_ngram_size"),
        (lambda: LogitBias({1: float("inf")}), "logit_bias"),
        (lambda: AllowedTokens(["a"]), "allowed_tokens"),
    ],
)
def test_bad_parameters(make: object, match: str) -> None:
    with pytest.raises(SamplingParameterError, match=match):
        make()  # type: ignore[operator]


def test_masks_that_empty_a_row_raise() -> None:
    z = np.zeros((2, 3))
    with pytest.raises(EmptySupportError, match=r"rows \[0, 1\]"):
        ForbiddenTokens([0, 1, 2])(z)
    with pytest.raises(EmptySupportError):
        NoRepeatNGram(1)(np.array([[0.0, 0.0], [0.0, 0.0]]), [[0, 1], []])
    with pytest.raises(ShapeMismatchError):
        AllowedTokens([7])(z)
    with pytest.raises(ShapeMismatchError):
        RepetitionPenalty(1.2)(z, [[5], [0]])
    with pytest.raises(ShapeMismatchError):
        RepetitionPenalty(1.2)(z, [[0]])
    with pytest.raises(SamplingParameterError, match="history"):
        RepetitionPenalty(1.2)(z, None)


def test_check_logits() -> None:
    from faithful.errors import InvalidLogitsError

    for bad in ([[0.0, np.nan]], [[np.inf, 0.0]], [0.0, 1.0], [["a"]], np.zeros((2, 0))):
        with pytest.raises(InvalidLogitsError):
            check_logits(bad)
    with pytest.raises(EmptySupportError):
        check_logits([[0.0], [-np.inf]])
    x32 = np.zeros((1, 2), dtype=np.float32)
    assert check_logits(x32).dtype == np.float64
