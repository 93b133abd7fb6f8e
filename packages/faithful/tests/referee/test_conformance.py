"""The conformance matrix, held to its own standard: faithful all green, HF's top-p ties and broken adapters flagged."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from faithful.cli import main
from faithful.fidelity.stats import GoodnessOfFitNull
from faithful.referee.conformance import (
    DEFAULT_SETTINGS,
    Case,
    ConformanceError,
    _summed_pvalue,
    cases_for,
    conformance_matrix,
)
from faithful.referee.engines import UnknownEngineError
from faithful.samplers import parse_sampler_spec

pytest.importorskip("torch")
pytest.importorskip("transformers")

from faithful.referee.engines.hf import HFEngine
from faithful.referee.engines.torch_naive import TorchNaiveEngine

SMALL = {"vocab_sizes": (50, 200), "n": 600, "reps": 999}


@pytest.fixture(scope="module")
def matrix() -> Any:
    return conformance_matrix(["faithful", "hf", "torch-naive"], DEFAULT_SETTINGS, **SMALL)  # type: ignore[arg-type]


def test_faithful_is_all_green(matrix: Any) -> None:
    cells = [c for c in matrix.cells if c.engine == "faithful"]
    assert len(cells) == len(DEFAULT_SETTINGS)
    assert [c.status for c in cells] == ["pass"] * len(cells), [c.reason for c in cells if c.reason]
    assert all(c.zero_draws == 0 and not c.mismatches and c.tv_exact == 0 for c in cells)
    assert all(c.rows == len(matrix.cases) * 2 for c in cells)


@pytest.mark.parametrize(
    "setting", ["top-p:0.5", "top-p:0.9", "temperature:0.7+top-k:10+top-p:0.9+min-p:0.05"]
)
def test_hf_top_p_ties_are_flagged_against_the_canonical_definition(matrix: Any, setting: str) -> None:
    cell = matrix.cell("hf", setting)
    assert cell.status == "fail"
    # exactly the known behaviour: tokens tied at the cutoff dropped, on the rows built with ties, and nothing else
    assert cell.mismatches and all(m.tied and m.dropped and not m.added for m in cell.mismatches)
    # the rows built with ties, and the offset rows: float32 around 1e4 has a step of 2**-10, so their logits tie too
    kinds = {m.case.split("/")[0] for m in cell.mismatches}
    assert "ties" in kinds and kinds <= {"ties", "offset"}
    assert "tied at the cutoff" in cell.reason
    assert all("top_p" in m.rules for m in cell.mismatches)  # the rule whose cutoff splits the tie group
    assert cell.zero_draws == 0  # HF keeps a subset: it never draws a token the canonical q excludes
    assert cell.p_own >= matrix.alpha / len(matrix.settings)  # torch.multinomial draws from HF's own q


@pytest.mark.parametrize(
    "setting", ["sample", "temperature:0.7", "top-k:5", "min-p:0.1", "typical:0.9", "epsilon:0.02"]
)
def test_hf_agrees_where_it_should(matrix: Any, setting: str) -> None:
    assert matrix.cell("hf", setting).status == "pass", matrix.cell("hf", setting).reason


def test_float32_underflow_is_counted_not_failed(matrix: Any) -> None:
    cell = matrix.cell("hf", "temperature:0.7")  # peaked rows: tokens of canonical probability < 1e-45
    assert cell.status == "pass" and cell.negligible_tokens > 0


def test_unsupported_settings_are_na(matrix: Any) -> None:
    cell = matrix.cell("torch-naive", "typical:0.9")
    assert cell.status == "n/a" and "typical_p" in cell.reason


class CrossingTokenDropped(TorchNaiveEngine):
    """A top-p that removes the token crossing the threshold (esm#360, fish-speech#1171)."""

    name = "broken-top-p"

    def top_p_remove(self, sorted_probs: Any, top_p: float) -> Any:
        import torch

        remove = torch.cumsum(sorted_probs, dim=-1) > top_p
        remove[..., 0] = False
        return remove


class WrongTemperatureSampler(TorchNaiveEngine):
    """Processors right, sampler wrong: draws at temperature 0.75 when asked for 0.7 (same support)."""

    name = "broken-sampler"

    def sample(self, logits: np.ndarray, keywords: Mapping[str, Any], n: int, seed: int) -> np.ndarray:
        kw = dict(keywords)
        if "temperature" in kw:
            kw["temperature"] = kw["temperature"] * 0.75 / 0.7
        return super().sample(logits, kw, n, seed)


def test_broken_adapters_are_flagged() -> None:
    settings = ["top-k:5", "top-p:0.5", "temperature:0.7"]
    m = conformance_matrix(
        [CrossingTokenDropped(), WrongTemperatureSampler()], settings, vocab_sizes=(50,), n=2000, reps=999
    )
    top_p = m.cell("broken-top-p", "top-p:0.5")
    assert top_p.status == "fail"
    untied = [mm for mm in top_p.mismatches if not mm.tied]
    assert untied and {mm.case.split("/")[0] for mm in untied} >= {"random", "neg-inf"}
    assert all(mm.rules == ["top_p"] for mm in untied) and "at top_p's cutoff" in top_p.reason
    assert m.cell("broken-top-p", "top-k:5").status == "pass"
    assert m.cell("broken-top-p", "temperature:0.7").status == "pass"
    wrong_t = m.cell("broken-sampler", "temperature:0.7")
    assert wrong_t.status == "fail" and not wrong_t.mismatches  # only the calibrated tests can see it
    assert wrong_t.p_canonical is not None and wrong_t.p_own is not None
    assert wrong_t.p_canonical <= 1e-3 and wrong_t.p_own <= 1e-3 and "sampler bug" in wrong_t.reason
    assert m.cell("broken-sampler", "top-k:5").status == "pass"


def test_summed_pvalue_is_calibrated() -> None:
    cases = cases_for(50) + cases_for(300)
    qs = [q for c in cases for q in parse_sampler_spec("temperature:0.7+top-p:0.9").distribution(c.logits)]
    nulls = [GoodnessOfFitNull.simulate(q, 500, reps=999, seed=i) for i, q in enumerate(qs)]
    rng = np.random.default_rng(5)
    ps = np.array(
        [
            _summed_pvalue(
                nulls, [nl.test(rng.multinomial(500, q)).g for nl, q in zip(nulls, qs, strict=True)], t
            )
            for t in range(300)
        ]
    )
    assert 0.01 <= (ps < 0.05).mean() <= 0.10  # level 5% within sampling error of 300 trials
    assert 0.12 <= (ps < 0.2).mean() <= 0.28
    # and it rejects a wrong distribution
    wrong = [nl.test(rng.multinomial(500, np.roll(q, 1))).g for nl, q in zip(nulls, qs, strict=True)]
    assert _summed_pvalue(nulls, wrong, 0) <= 0.01


def test_cases_have_what_they_claim() -> None:
    by = {c.name.split("/")[0]: c.logits for c in cases_for(100)}
    assert np.isneginf(by["neg-inf"]).any() and np.isfinite(by["neg-inf"]).any(axis=1).all()
    assert all(len(np.unique(row)) < 20 for row in by["ties"])
    assert by["offset"].min() > 9000 and np.ptp(by["flat"]) < 0.1 and np.ptp(by["peaked"]) > 100


def test_missing_engines_are_reported_not_faked() -> None:
    m = conformance_matrix(["faithful", "vllm", "flashinfer"], ["top-k:5"], vocab_sizes=(50,), n=100, reps=99)
    for name, module in (("vllm", "vllm"), ("flashinfer", "flashinfer")):
        cell = m.cell(name, "top-k:5")
        if importlib.util.find_spec(module) is None:
            assert cell.status == "n/a" and "not available" in cell.reason and name in m.unavailable
            assert cell.p_canonical is None and cell.rows == 0


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"engines": ["nope"]}, UnknownEngineError, "unknown engine 'nope'"),
        ({"settings": ["top-p:2"]}, ConformanceError, "bad setting 'top-p:2'"),
        ({"settings": ["greedy"]}, ConformanceError, "greedy"),
        (
            {"settings": ["repetition-penalty:1.2"], "cases": [Case("bare", np.zeros((1, 5)))]},
            ConformanceError,
            "case(s) bare have no history",
        ),
        ({"settings": ["xtc:0.5"]}, ConformanceError, "stochastic"),
        ({"n": 0}, ConformanceError, "`n` and `reps`"),
        ({"vocab_sizes": (1,)}, ConformanceError, "vocabulary sizes must be >= 2"),
    ],
)
def test_bad_requests(kwargs: dict[str, Any], error: type[Exception], message: str) -> None:
    args: dict[str, Any] = {
        "engines": ["faithful"],
        "settings": ["top-k:2"],
        "vocab_sizes": (50,),
        "n": 50,
        "reps": 9,
    }
    args.update(kwargs)
    with pytest.raises(error) as info:
        conformance_matrix(args.pop("engines"), args.pop("settings"), **args)
    assert message in str(info.value)


def test_cli_conformance(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "conformance",
        "--engines",
        "faithful,hf,vllm",
        "--settings",
        "top-k:3,top-p:0.5",
        "--vocab",
        "50",
    ]
    argv += ["--n", "400", "--reps", "199", "--report", str(tmp_path / "rep")]
    # a failing cell (HF's top-p ties) is exit 3, "partial": the matrix is still printed in full
    assert main([*argv, "--json"]) == 3
    env = json.loads(capsys.readouterr().out)
    assert env["command"] == "conformance" and env["status"] == "partial" and env["exit_code"] == 3
    assert env["errors"] == ["1 of 6 cells failed: hf x top-p:0.5; the matrix says which tokens and rule"]
    cells = {(c["engine"], c["setting"]): c["status"] for c in env["data"]["cells"]}
    assert cells[("faithful", "top-k:3")] == cells[("faithful", "top-p:0.5")] == "pass"
    assert cells[("hf", "top-p:0.5")] == "fail"
    assert (
        json.loads((tmp_path / "rep" / "conformance.json").read_text())["failures"] == env["data"]["failures"]
    )
    page = (tmp_path / "rep" / "conformance.html").read_text()
    assert env["data"]["report"].endswith("conformance.html")
    assert "FAIL" in page and "rule: top_p" in page and "a tie at the cutoff" in page and "vllm" in page
    (tmp_path / "file").write_text("x")
    assert main([*argv[:-1], str(tmp_path / "file" / "sub")]) == 1
    assert "cannot write the report" in capsys.readouterr().err
    assert main(argv) == 3
    captured = capsys.readouterr()
    text = captured.out
    assert "FAIL" in text and "hf x top-p:0.5" in text and "tied at the cutoff" in text
    assert (
        captured.err.strip()
        == "faithful: 1 of 6 cells failed: hf x top-p:0.5; the matrix says which tokens and rule"
    )
    # all green: exit 0
    green = ["conformance", "--engines", "faithful", "--settings", "top-k:3", "--vocab", "50", "--n", "200"]
    assert main([*green, "--reps", "99", "--json"]) == 0
    env = json.loads(capsys.readouterr().out)
    assert env["status"] == "ok" and env["errors"] == [] and env["data"]["failures"] == 0
    assert main(["conformance", "--engines", "faithful,nope", "--json"]) == 2
    env = json.loads(capsys.readouterr().out)
    assert env["status"] == "usage" and "unknown engine 'nope'" in env["errors"][0]
    assert main(["conformance", "--vocab", "fifty"]) == 2
    assert "--vocab" in capsys.readouterr().err


def test_an_engine_that_raises_is_an_error_cell_not_a_crash() -> None:
    # faithful's temperature 0 is the T -> 0 limit (uniform over the maximal logits); HF refuses it
    m = conformance_matrix(
        ["faithful", "hf"], ["temperature:0", "top-k:3"], vocab_sizes=(50,), n=300, reps=199
    )
    assert m.cell("faithful", "temperature:0").status == "pass"
    hf = m.cell("hf", "temperature:0")
    assert hf.status == "error" and "temperature" in hf.reason
    assert m.cell("hf", "top-k:3").status == "pass"


PENALTIES = ("repetition-penalty:1.3", "presence:0.5+frequency:0.25", "repetition-penalty:1.3+top-p:0.9")


def test_penalties_are_in_the_grid_and_read_each_rows_history(matrix: Any) -> None:
    assert set(PENALTIES) <= set(DEFAULT_SETTINGS)
    for setting in PENALTIES:
        cell = matrix.cell("faithful", setting)
        assert cell.status == "pass" and cell.tv_exact == 0, cell.reason
    # HF's RepetitionPenaltyLogitsProcessor, fed the history as input_ids, is the canonical penalty
    assert matrix.cell("hf", "repetition-penalty:1.3").status == "pass"
    # composed with top-p, HF's only difference is the known tie at the top-p cutoff
    composed = matrix.cell("hf", "repetition-penalty:1.3+top-p:0.9")
    assert composed.status == "fail" and all(m.tied and "top_p" in m.rules for m in composed.mismatches)
    # presence/frequency are OpenAI/vLLM semantics: HF has no processor for them, and says so
    presence = matrix.cell("hf", "presence:0.5+frequency:0.25")
    assert presence.status == "n/a" and presence.reason.startswith("not supported by this engine")
    assert matrix.cell("torch-naive", "repetition-penalty:1.3").status == "n/a"


def test_a_penalty_is_not_a_no_op_on_these_cases() -> None:
    # the histories hold likely tokens: the penalty moves real mass (else the cells above prove nothing)
    for case in cases_for(50):
        plain = parse_sampler_spec("sample").distribution(case.logits)
        penalised = parse_sampler_spec("repetition-penalty:1.3").distribution(
            case.logits, history=case.history_rows()
        )
        if case.name.startswith("flat"):
            continue  # logits near 0: dividing them by 1.3 changes nearly nothing
        assert np.abs(plain - penalised).sum(axis=1).min() > 0.02, case.name


class HistoryForgotten(HFEngine):
    """An adapter that drops the history: HF's penalty then sees no seen tokens (a silent no-op)."""

    name = "broken-penalty"

    def distribution(
        self, logits: np.ndarray, keywords: Mapping[str, Any], history: np.ndarray | None = None
    ) -> np.ndarray:
        return super().distribution(logits, keywords, None if history is None else history[:, :0])

    def sample(
        self,
        logits: np.ndarray,
        keywords: Mapping[str, Any],
        n: int,
        seed: int,
        history: np.ndarray | None = None,
    ) -> np.ndarray:
        return super().sample(logits, keywords, n, seed, None if history is None else history[:, :0])


def test_a_broken_penalty_adapter_is_flagged() -> None:
    m = conformance_matrix(
        [HistoryForgotten()], ["repetition-penalty:1.3", "top-k:5"], vocab_sizes=(50,), n=1000, reps=499
    )
    cell = m.cell("broken-penalty", "repetition-penalty:1.3")
    assert cell.status == "fail" and cell.p_canonical is not None and cell.p_canonical <= 1e-3
    assert cell.tv_exact is not None and cell.tv_exact > 0.02
    assert m.cell("broken-penalty", "top-k:5").status == "pass"


def test_xtc_stays_out_with_a_reason() -> None:
    with pytest.raises(ConformanceError, match="stochastic"):
        conformance_matrix(["faithful"], ["xtc:0.5"], vocab_sizes=(50,), n=10, reps=9)
