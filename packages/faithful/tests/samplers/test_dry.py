"""DRY against llama.cpp's definition: its own test cases, a brute-force reading of the definition, exact q.

Oracle: llama.cpp at commit c392e5094deaf2d1a7c18683214f007fad3fe42b (ggerganov/llama.cpp),
``src/llama-sampling.cpp`` (``llama_sampler_dry_apply``: breaker limit, Z-algorithm repeat
counts, ``multiplier * base ** (length - allowed_length)``, exponent clamp at
``88.7228391 / log(base)``) and ``tests/test-sampling.cpp`` lines 356-360 (``test_dry``),
whose expected probabilities (float32, 1e-5) are ported below. llama.cpp's test applies
its ``dist`` sampler afterwards, which sorts by probability: the expected lists are sorted.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from faithful.errors import FaithfulError, SamplingParameterError
from faithful.processors import DRY, softmax
from faithful.rng import KeyedRNG
from faithful.samplers import Sampler, make_sampler, parse_sampler_spec

LLAMA_CASES = [
    # probs, last tokens, expected (sorted), multiplier, base, allowed_length, last_n, breakers
    ([0.25] * 4, [0, 1], [0.25] * 4, 1.0, 1.1, 2, 4, []),
    ([0.25] * 4, [0, 1, 2, 0, 1], [0.296923, 0.296923, 0.296923, 0.109232], 1.0, 1.1, 2, 5, []),
    ([0.2] * 5, [0, 1, 3, 4, 0, 1], [0.2] * 5, 1.0, 1.1, 2, 6, [[3]]),
    ([0.2] * 5, [0, 1, 2, 0, 1], [0.241818] * 4 + [0.032727], 2.0, 1.1, 2, 5, []),
    ([0.2] * 5, [0, 1, 2, 3, 4, 0, 1], [0.2] * 5, 1.0, 1.1, 4, 7, []),
]


@pytest.mark.parametrize("case", LLAMA_CASES, ids=lambda c: str(c[1]))
def test_llama_cpp_test_sampling_cases(case: tuple) -> None:  # type: ignore[type-arg]
    probs, last, expected, mult, base, allowed, last_n, breakers = case
    z = np.log(np.array([probs]))
    out = DRY(mult, base, allowed, last_n, breakers)(z, [last])
    q = np.sort(softmax(out)[0])[::-1]
    np.testing.assert_allclose(q, expected, atol=1e-5)


def test_the_z_algorithm_example_of_llama_cpp() -> None:
    # llama-sampling.cpp's comment: "a b c c b c y a b c" -> extending with c repeats 3, b 1, y 2
    a, b, c, y = 0, 1, 2, 3
    hist = [a, b, c, c, b, c, y, a, b, c]
    assert DRY(1.0, 2.0, 1).penalties(hist) == {c: 4.0, b: 1.0, y: 2.0}
    assert DRY(1.0, 2.0, 2).penalties(hist) == {c: 2.0, y: 1.0}
    assert DRY(0.5, 2.0, 3).penalties(hist) == {c: 0.5}


def brute_force(
    hist: Sequence[int],
    mult: float,
    base: float,
    allowed: int,
    last_n: int,
    breakers: Sequence[Sequence[int]],
) -> dict[int, float]:
    """The definition read directly, in O(n^3): no Z-algorithm, no shared code."""
    if mult == 0 or last_n == 0:
        return {}
    w = list(hist) if last_n < 0 else list(hist)[-last_n:]
    size = len(w)
    if size <= allowed:
        return {}
    limit = size
    for i in range(size):  # i places from the end: the most recent breaker start wins
        start = size - 1 - i
        fits = [br for br in breakers if len(br) - 1 <= i and w[start : start + len(br)] == list(br)]
        if fits:
            limit = i - (max(len(br) for br in fits) - 1)
            break
    if limit < allowed:
        return {}
    longest: dict[int, int] = {}
    for j in range(1, size):  # an earlier occurrence ends at j - 1 and is followed by w[j]
        n = 0
        while n < j and w[j - 1 - n] == w[size - 1 - n]:
            n += 1
        n = min(n, limit)
        if n >= allowed:
            longest[w[j]] = max(longest.get(w[j], 0), n)
    singles = {br[0] for br in breakers if len(br) == 1}
    cap = int(88.7228391 / math.log(base)) if base > 1.000001 else 0
    out = {}
    for t, n in longest.items():
        if t in singles:
            continue
        e = n - allowed
        if cap > 0:
            e = min(e, cap)
        out[t] = mult * base**e
    return out


def test_penalties_equal_the_definition_on_random_histories() -> None:
    rng = np.random.default_rng(0)
    penalised = 0
    for _ in range(3000):
        alphabet = int(rng.integers(2, 6))
        hist = rng.integers(0, alphabet, int(rng.integers(0, 40))).tolist()
        breakers = [
            rng.integers(0, alphabet, int(rng.integers(1, 4))).tolist()
            for _ in range(int(rng.integers(0, 3)))
        ]
        mult, base = float(rng.choice([0.0, 0.8, 2.0])), float(rng.choice([1.0, 1.5, 1.75, 3.0]))
        allowed, last_n = int(rng.integers(0, 5)), int(rng.choice([-1, 0, 3, 8, 20]))
        ours = DRY(mult, base, allowed, last_n, breakers).penalties(hist)
        assert ours == pytest.approx(brute_force(hist, mult, base, allowed, last_n, breakers), rel=1e-15), (
            hist,
            breakers,
            allowed,
            last_n,
        )
        penalised += bool(ours)
    assert penalised > 500  # the cases exercise the penalty, not only its absence


def test_multi_token_breaker_cuts_the_repetition() -> None:
    # 0 1 2 | 7 8 | 0 1: the breaker (7, 8) sits 4 tokens from the end; a repetition may not reach past it
    hist = [0, 1, 2, 7, 8, 0, 1]
    assert DRY(1.0, 2.0, 2).penalties(hist) == {2: 1.0}
    assert DRY(1.0, 2.0, 2, sequence_breakers=[[7, 8]]).penalties(hist) == {2: 1.0}  # limit 2 still allows 2
    assert DRY(1.0, 2.0, 2, sequence_breakers=[[8]]).penalties(hist) == {2: 1.0}
    assert DRY(1.0, 2.0, 2, sequence_breakers=[[1]]).penalties(hist) == {}  # the last token is a breaker
    # a single-token breaker is never penalised itself
    assert DRY(1.0, 2.0, 1, sequence_breakers=[[2]]).penalties([0, 1, 2, 0, 1]) == {}
    assert DRY(1.0, 2.0, 1).penalties([0, 1, 2, 0, 1]) == {2: 2.0}


def test_window_and_exponent_clamp() -> None:
    hist = [0, 1, 2, 0, 1]
    assert DRY(1.0, 2.0, 2, penalty_last_n=2).penalties(hist) == {}  # window [0, 1]: too short
    assert DRY(1.0, 2.0, 2, penalty_last_n=5).penalties(hist) == {2: 1.0}
    assert DRY(1.0, 2.0, 2, penalty_last_n=0).penalties(hist) == {}
    assert DRY(0.0, 2.0, 2).penalties(hist) == {}
    # 100 zeros: the repetition has length 99, the exponent 97 is clamped to int(88.72 / log 3) = 80
    assert DRY(1.0, 3.0, 2).penalties([0] * 100) == {0: 3.0**80}
    assert DRY(1.0, 1.0, 2).penalties([0] * 100) == {0: 1.0}


def test_validation_messages() -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"dry_multiplier": -1.0}, "`dry_multiplier` must be a finite number >= 0, got -1.0"),
        ({"dry_multiplier": 1.0, "dry_base": 0.5}, "`dry_base` must be a finite number >= 1, got 0.5"),
        (
            {"dry_multiplier": 1.0, "dry_allowed_length": -1},
            "`dry_allowed_length` must be an int >= 0, got -1",
        ),
        ({"dry_multiplier": 1.0, "dry_penalty_last_n": -2}, "`dry_penalty_last_n` must be an int >= -1"),
        ({"dry_multiplier": 1.0, "dry_sequence_breakers": [[]]}, "`dry_sequence_breakers` must be non-empty"),
        ({"dry_base": 2.0}, "`dry_base` configure dry, which is off: give `dry_multiplier` too"),
    ]
    for kwargs, needle in cases:
        with pytest.raises(SamplingParameterError) as info:
            make_sampler(**kwargs)
        assert needle in str(info.value)
        assert isinstance(info.value, FaithfulError)


def test_spec_round_trip() -> None:
    s = parse_sampler_spec("dry:0.8+dry-base:2+dry-allowed-length:3+dry-last-n:64+dry-breakers:13,25/7")
    (proc,) = s.processors
    assert isinstance(proc, DRY)
    assert (proc.multiplier, proc.base, proc.allowed_length, proc.penalty_last_n) == (0.8, 2.0, 3, 64)
    assert proc.sequence_breakers == ((13,), (25, 7))
    assert parse_sampler_spec(s.name).processors == s.processors


Z = np.log(np.array([0.3, 0.2, 0.15, 0.12, 0.1, 0.08, 0.05]))
HIST = [0, 1, 2, 3, 0, 1, 2, 5, 0, 1]  # extending "0 1" -> 2 (length 2, and "... 0 1" -> 2), "1" -> 2


def test_goodness_of_fit_against_the_exact_q(fits: Callable[..., None]) -> None:
    s = make_sampler(dry_multiplier=0.8, dry_base=1.75, dry_allowed_length=1, temperature=0.9)
    pen = brute_force(HIST, 0.8, 1.75, 1, -1, [])
    assert pen  # the history triggers the penalty
    z = Z.copy()
    for t, amount in pen.items():
        z[t] -= amount
    q = softmax((z - z.max())[None, :] / 0.9)[0]
    np.testing.assert_allclose(s.distribution(Z[None, :], history=[HIST])[0], q, rtol=1e-13)
    n = 1_000_000
    r = s(np.broadcast_to(Z, (n, Z.size)), rng=KeyedRNG(11), history=[HIST] * n)
    fits(r.tokens, q)


def repetitive_histories(b: int, seed: int) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(b):
        motif = rng.integers(0, 50, int(rng.integers(2, 6))).tolist()
        out.append(
            motif * 4 + rng.integers(0, 50, 3).tolist() + motif[: int(rng.integers(1, len(motif) + 1))]
        )
    return out


SAMPLERS = [
    make_sampler(dry_multiplier=0.8),
    make_sampler(
        dry_multiplier=1.2, dry_base=2.0, dry_allowed_length=1, dry_sequence_breakers=[[3], [4, 5]], top_p=0.9
    ),
    make_sampler(dry_multiplier=0.8, draw="gumbel"),
]


@pytest.mark.parametrize("sampler", SAMPLERS, ids=lambda s: s.name)
def test_no_mutation_and_batch_invariance(sampler: Sampler) -> None:
    z = np.random.default_rng(3).standard_normal((32, 50)) * 2
    before = z.copy()
    hist = repetitive_histories(32, 4)
    hist_before = [list(h) for h in hist]
    rows = np.arange(500, 532)
    batch = sampler(z, rng=5, step=2, rows=rows, history=hist, return_q=True)
    np.testing.assert_array_equal(z, before)
    assert hist == hist_before
    assert batch.q is not None and (batch.q[np.arange(32), batch.tokens] > 0).all()
    plain = make_sampler(
        processors=[p for p in sampler.processors if not isinstance(p, DRY)], draw=sampler.draw
    )
    assert not np.allclose(plain.distribution(z, history=hist), batch.q)  # DRY changed q
    for i in (0, 9, 31):
        alone = sampler(z[i : i + 1], rng=5, step=2, rows=[rows[i]], history=hist[i : i + 1], return_q=True)
        assert alone.tokens[0] == batch.tokens[i] and alone.logprobs[0] == batch.logprobs[i]
        assert alone.q is not None
        np.testing.assert_array_equal(alone.q[0], batch.q[i])


@pytest.mark.parametrize("sampler", SAMPLERS, ids=lambda s: s.name)
def test_numpy_and_torch_agree(sampler: Sampler) -> None:
    torch = pytest.importorskip("torch")
    z = np.random.default_rng(6).standard_normal((16, 50))
    hist = repetitive_histories(16, 7)
    ours = sampler(z, rng=1, step=0, history=hist, return_q=True)
    twin = Sampler(sampler.name, sampler.processors, draw=sampler.draw, backend="torch")
    theirs = twin(torch.from_numpy(z), rng=1, step=0, history=hist, return_q=True)
    np.testing.assert_array_equal(ours.tokens, theirs.tokens)
    assert ours.q is not None and theirs.q is not None
    # torch ops on the tensor's device: the same kept set, q to the torch backend's 1e-12 (relative)
    np.testing.assert_array_equal(ours.q > 0, theirs.q.numpy() > 0)
    np.testing.assert_allclose(ours.q, theirs.q, rtol=1e-12, atol=0)


# outputs of llama.cpp itself, built from source (provenance in the file's "source")
DRY_LLAMA = json.loads((Path(__file__).parent / "llama_cpp_cases.json").read_text())["dry"]


@pytest.mark.parametrize("case", DRY_LLAMA, ids=lambda c: f"{len(c['history'])}tok")
def test_equals_llama_cpp_built_from_source(case: dict[str, Any]) -> None:
    amounts = case["subtracted"]
    dry = DRY(
        case["multiplier"],
        case["base"],
        case["allowed_length"],
        case["penalty_last_n"],
        case["sequence_breakers"],
    )
    out = dry(np.zeros((1, len(amounts))), [case["history"]])
    np.testing.assert_allclose(-out[0], amounts, rtol=1e-6, atol=0)  # llama.cpp computes in float32


def test_the_llama_cpp_sample_exercises_the_penalty() -> None:
    assert sum(any(a != 0 for a in c["subtracted"]) for c in DRY_LLAMA) >= 30
    assert any(c["sequence_breakers"] for c in DRY_LLAMA) and any(c["allowed_length"] == 0 for c in DRY_LLAMA)
