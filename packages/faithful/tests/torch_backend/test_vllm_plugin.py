"""The vLLM plugin's per-request logic, driven by stand-ins for vLLM's BatchUpdate and SamplingParams.

``FakeBatchUpdate`` and ``FakeMove`` are not vLLM: they mirror, field for field and in order,
``BatchUpdate`` and ``MoveDirectionality`` of ``vllm/v1/sample/logits_processor/interface.py``
(vllm-project/vllm; a frozen dataclass ``batch_size: int``, ``removed: Sequence[int]``,
``added: Sequence[tuple[int, SamplingParams, list[int] | None, list[int]]]`` (index, params,
prompt ids, the live output ids), ``moved: Sequence[tuple[int, int, MoveDirectionality]]``).
``FakeParams`` carries the ``SamplingParams`` fields the plugin reads (``extra_args``, ``seed``,
``n``). The test with vLLM itself needs vLLM and a GPU.
"""

from __future__ import annotations

import enum
import logging
import subprocess
import sys
import types
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from faithful.rng import KeyedRNG
from faithful.samplers import parse_sampler_spec
from faithful.vllm_plugin import FaithfulRequests, request_plan

torch = pytest.importorskip("torch")


class FakeMove(enum.Enum):
    UNIDIRECTIONAL = enum.auto()
    SWAP = enum.auto()


@dataclass
class FakeParams:
    extra_args: dict[str, Any] | None = None
    seed: int | None = None
    n: int = 1


@dataclass(frozen=True)
class FakeBatchUpdate:
    batch_size: int
    removed: Sequence[int] = field(default_factory=list)
    added: Sequence[tuple[int, FakeParams, list[int] | None, list[int]]] = field(default_factory=list)
    moved: Sequence[tuple[int, int, FakeMove]] = field(default_factory=list)


V = 50


def model_logits(history: list[int]) -> np.ndarray:
    """A deterministic toy model: the next-token logits depend on the whole history."""
    return np.random.default_rng(hash(tuple(history)) % 2**32).standard_normal(V) * 2.0


def expected_token(
    spec: str, seed: int, row: int, request: tuple[list[int], list[int]], known_prompt: list[int]
) -> int:
    """faithful's own keyed draw for this request's step (numpy reference); the model sees the whole
    prompt, the penalties the prompt vLLM passed (none when it passes None) and the output."""
    prompt, output = request
    history = known_prompt + output
    res = parse_sampler_spec(spec)(
        model_logits(prompt + output)[None, :],
        rng=KeyedRNG(seed),
        step=len(output),
        rows=[row],
        history=[history],
    )
    return int(res.tokens[0])


def run_step(proc: FaithfulRequests, batch: list[tuple[list[int], list[int]] | None]) -> list[int]:
    """One engine step: the batch's logits, the processor, then vLLM's greedy pick of each forced row."""
    rows = [
        model_logits(p + o) if r is not None else np.zeros(V) for r in batch for (p, o) in [r or ([], [])]
    ]
    logits = torch.from_numpy(np.stack(rows)).to(torch.float32)
    before = logits.clone()
    out = proc.apply(logits)
    picked = out.argmax(dim=1).tolist()
    for i, slot in enumerate(batch):
        if i in proc.slots:
            assert torch.isinf(out[i]).sum() == V - 1 and out[i, picked[i]] == 0  # forced one-hot
        else:
            assert torch.equal(out[i], before[i])  # a request that did not opt in is untouched
        if slot is not None:
            slot[1].append(picked[i])  # vLLM appends to the live output list
    return picked


SPECS = [
    "temperature:0.8+top-p:0.9",
    "repetition-penalty:1.3+top-k:10",
    "gumbel",
    "xtc:0.5+xtc-threshold:0.05",
]


@pytest.mark.parametrize("spec", SPECS)
def test_forced_tokens_are_faithfuls_keyed_draws_through_adds_moves_and_removals(spec: str) -> None:
    proc = FaithfulRequests()
    a = ([1, 2, 3], [])
    b = ([4, 5], [])
    c = ([6], [])
    plain = ([7, 8], [])
    proc.update(
        FakeBatchUpdate(
            4,
            added=[
                (0, FakeParams({"faithful": spec}, seed=11), a[0], a[1]),
                (1, FakeParams({"faithful": spec, "faithful_seed": 5, "faithful_row": 3}), b[0], b[1]),
                (2, FakeParams(None, seed=1), plain[0], plain[1]),
                (3, FakeParams({"faithful": spec}, seed=12), None, c[1]),  # vLLM may pass no prompt ids
            ],
        )
    )
    keys = {id(a): (11, 0, a[0]), id(b): (5, 3, b[0]), id(c): (12, 0, [])}
    layout: list[Any] = [a, b, plain, c]
    for step in range(6):
        want = {
            i: expected_token(spec, keys[id(r)][0], keys[id(r)][1], r, keys[id(r)][2])
            for i, r in enumerate(layout)
            if r is not None and id(r) in keys
        }
        got = run_step(proc, layout)
        assert {i: got[i] for i in want} == want
        if step == 1:  # swap a and c
            proc.update(FakeBatchUpdate(4, moved=[(0, 3, FakeMove.SWAP)]))
            layout[0], layout[3] = layout[3], layout[0]
        if step == 3:  # b finishes; c moves down into its slot (vLLM condenses the batch)
            proc.update(FakeBatchUpdate(3, removed=[1], moved=[(3, 1, FakeMove.UNIDIRECTIONAL)]))
            layout = [layout[0], layout[3], layout[2]]
        if step == 4:  # a new request replaces the plain one at index 2
            d = ([9, 9], [])
            keys[id(d)] = (99, 0, d[0])
            proc.update(FakeBatchUpdate(3, added=[(2, FakeParams({"faithful": spec}, seed=99), d[0], d[1])]))
            layout[2] = d
    assert len(a[1]) == 6 and len(c[1]) == 6


def test_requests_without_the_spec_cost_nothing() -> None:
    proc = FaithfulRequests()
    proc.update(FakeBatchUpdate(1, added=[(0, FakeParams(None, seed=3), [1], [])]))
    logits = torch.zeros(1, V)
    assert proc.apply(logits) is logits and not proc.slots
    proc.update(None)  # no change to the batch


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (FakeParams({"faithful": "top-p:0.9"}), "give the request a `seed`"),
        (FakeParams({"faithful": "top-p:1.5"}, seed=1), "top_p"),
        (FakeParams({"faithful": "nonsense:1"}, seed=1), "unknown sampler spec part"),
        (FakeParams({"faithful": 7}, seed=1), "spec string"),
        (FakeParams({"faithful": "sample", "faithful_seed": 3}, n=2), "n > 1"),
        (FakeParams({"faithful": "sample", "faithful_row": "x"}, seed=1), "`faithful_row` must be an int"),
        (FakeParams({"faithful_seed": 3}), "need `faithful`"),
    ],
)
def test_bad_requests_are_refused_with_the_reason(params: FakeParams, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        request_plan(params)


def test_a_bad_row_is_left_to_vllm() -> None:
    proc = FaithfulRequests()
    proc.update(
        FakeBatchUpdate(2, added=[(i, FakeParams({"faithful": "sample"}, seed=i), [1], []) for i in (0, 1)])
    )
    logits = torch.zeros(2, V)
    logits[1, 3] = float("nan")
    out = proc.apply(logits.clone())
    assert torch.isinf(out[0]).sum() == V - 1
    assert torch.isnan(out[1, 3]) and torch.isfinite(out[1, :3]).all()  # untouched, no exception


def test_importing_the_plugin_does_not_import_vllm() -> None:
    code = "import sys, faithful.vllm_plugin as m; assert 'vllm' not in sys.modules; print(m.EXTRA_SPEC)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "faithful"


def _vllm_and_gpu() -> str | None:
    try:
        import vllm  # noqa: F401
    except ImportError:
        return "vLLM not importable"
    return None if torch.cuda.is_available() else "no GPU"


@pytest.mark.skipif(_vllm_and_gpu() is not None, reason=_vllm_and_gpu() or "")
def test_inside_vllm_the_tokens_are_faithfuls(monkeypatch: pytest.MonkeyPatch) -> None:  # pragma: no cover
    # needs vLLM and a GPU; vLLM's V2 model runner refuses V1-interface processors at start-up
    monkeypatch.setenv("VLLM_USE_V2_MODEL_RUNNER", "0")
    from vllm import LLM, SamplingParams

    llm = LLM(
        model="facebook/opt-125m",
        logits_processors=["faithful.vllm_plugin:FaithfulLogitsProcessor"],
        enforce_eager=True,
    )
    params = SamplingParams(max_tokens=8, seed=7, extra_args={"faithful": "top-k:20"})
    first = llm.generate(["The capital of France is"], params)[0].outputs[0].token_ids
    again = llm.generate(["The capital of France is"], params)[0].outputs[0].token_ids
    assert list(first) == list(again)  # keyed: the same seed gives the same tokens
    # vLLM's own settings act after the forcing: greedy and a hot temperature take the same tokens
    for other in (
        SamplingParams(max_tokens=8, seed=7, temperature=0.0, extra_args={"faithful": "top-k:20"}),
        SamplingParams(max_tokens=8, seed=7, temperature=5.0, top_p=0.5, extra_args={"faithful": "top-k:20"}),
    ):
        assert list(llm.generate(["The capital of France is"], other)[0].outputs[0].token_ids) == list(first)


@pytest.mark.parametrize("n", [1, 3, 64])
def test_per_request_keys_on_the_device_are_the_host_bits(n: int) -> None:
    from faithful.vllm_plugin import _RequestKeys

    seeds = [0, 7, 2**64 - 1, 2**63, 12345678901234567]
    plans = [
        request_plan(
            FakeParams({"faithful": "sample", "faithful_row": row}, seed=seed), None, list(range(step))
        )
        for seed, row, step in zip(seeds, [0, 3, 2**62, 5, 1], [0, 1, 9, 30, 2], strict=True)
    ]
    keys = _RequestKeys([p for p in plans if p is not None])
    host = keys.uniforms(np.arange(5), 0, n)
    device = keys.device_uniforms(torch.arange(5), 0, n).numpy()
    np.testing.assert_array_equal(device.view(np.uint64), host.view(np.uint64))


def test_a_placeholder_history_is_left_to_vllm_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    """vLLM's asynchronous scheduling can leave -1 placeholders in the output ids (they are repaired
    only when something asks for them). Before: the penalty read the -1 and apply raised, failing
    vLLM's engine step."""
    proc = FaithfulRequests()
    outputs: list[list[int]] = [[3, -1], [3, -1]]
    proc.update(
        FakeBatchUpdate(
            2,
            added=[
                (0, FakeParams({"faithful": "repetition-penalty:1.3+top-k:5"}, seed=1), [1, 2], outputs[0]),
                (1, FakeParams({"faithful": "top-k:5"}, seed=2), [1, 2], outputs[1]),
            ],
        )
    )
    logits = torch.randn(2, V, generator=torch.Generator().manual_seed(0))
    before = logits.clone()
    with caplog.at_level(logging.WARNING, logger="faithful.vllm_plugin"):
        out = proc.apply(logits)
    assert proc.unforced == [0] and torch.equal(out[0], before[0])  # left to vLLM, untouched
    assert torch.isinf(out[1]).sum() == V - 1  # a spec that does not read the history is forced
    assert "placeholder" in caplog.text and "--logits-processors" in caplog.text
    outputs[0][1] = 7  # vLLM repaired the placeholder: forced again
    assert torch.isinf(proc.apply(before.clone())[0]).sum() == V - 1 and proc.unforced == []


def test_a_request_re_added_at_another_row_keeps_its_plan_and_mirostat_state() -> None:
    """vLLM's V2 model runner re-adds a request whose row changed (no moves); before, the re-add
    parsed a new sampler and mirostat's mu started again."""
    proc = FaithfulRequests()
    a = FakeParams({"faithful": "mirostat:2"}, seed=5)
    b = FakeParams({"faithful": "mirostat:2"}, seed=6)
    out_a: list[int] = []
    out_b: list[int] = []
    proc.update(FakeBatchUpdate(2, added=[(0, a, [1], out_a), (1, b, [1], out_b)]))
    plan_b = proc.slots[1]
    for _ in range(3):
        picked = proc.apply(torch.randn(2, V, generator=torch.Generator().manual_seed(len(out_a)))).argmax(1)
        out_a.append(int(picked[0]))
        out_b.append(int(picked[1]))
    mu = plan_b.sampler.mirostat.mu_for([0]) if plan_b.sampler.mirostat else None
    assert mu is not None and plan_b.sampler.mirostat is not None
    assert mu[0] != 2 * plan_b.sampler.mirostat.tau  # the state moved away from its start (2 tau)
    # a finishes; the V2 runner's adapter removes row 1 and re-adds b at row 0
    proc.update(FakeBatchUpdate(1, removed=[1], added=[(0, b, [1], out_b)]))
    assert proc.slots == {0: plan_b}
    assert plan_b.sampler.mirostat is not None and plan_b.sampler.mirostat.mu_for([0])[0] == mu[0]
    # a new request with fresh params at a reused index gets a fresh plan
    c = FakeParams({"faithful": "mirostat:2"}, seed=5)
    proc.update(FakeBatchUpdate(2, added=[(1, c, [1], [])]))
    assert proc.slots[1] is not plan_b and proc.slots[1].seed == 5


def test_the_vllm_class_has_the_interface_vllm_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    """Built against a stand-in base class (vLLM is not installed here): the methods and signatures
    vLLM's V1 sampler and loader call."""

    class LogitsProcessor:  # the stand-in for vllm.v1.sample.logits_processor.LogitsProcessor
        pass

    mod = types.ModuleType("vllm.v1.sample.logits_processor")
    mod.LogitsProcessor = LogitsProcessor  # type: ignore[attr-defined]
    for name in ("vllm", "vllm.v1", "vllm.v1.sample"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "vllm.v1.sample.logits_processor", mod)
    from faithful import vllm_plugin

    cls = vllm_plugin._build_vllm_class()
    assert issubclass(cls, LogitsProcessor) and cls.__module__ == "faithful.vllm_plugin"
    proc = cls(None, torch.device("cpu"), False)
    assert proc.is_argmax_invariant() is False and proc.needs_output_token_ids() is True
    with pytest.raises(ValueError, match="give the request a `seed`"):
        cls.validate_params(FakeParams({"faithful": "top-p:0.9"}))
    proc.update_state(FakeBatchUpdate(1, added=[(0, FakeParams({"faithful": "top-k:3"}, seed=1), [1], [])]))
    out = proc.apply(torch.randn(1, V))
    assert torch.isinf(out).sum() == V - 1
