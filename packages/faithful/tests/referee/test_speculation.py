"""`faithful speculative`: speculative decoding checked against the target, exit codes, bad input."""

from __future__ import annotations

import functools
import io
import json
from typing import Any

import numpy as np
import pytest
from faithful.cli import main
from faithful.decode.speculative import EXACT_RULE, AcceptRule
from faithful.errors import SamplingParameterError
from faithful.models import NGramModel
from faithful.referee import speculation
from faithful.referee.render import render_speculative
from faithful.referee.speculation import ProcessedModel, check_speculative
from faithful.samplers import parse_sampler_spec

BASE = ["speculative", "--target", "pydoc-words:3", "--draft", "pydoc-words:2", "--max-new-tokens", "4"]


def _run(argv: list[str]) -> tuple[int, dict[str, Any], str]:
    out, err = io.StringIO(), io.StringIO()
    code = main([*argv, "--json"], stdout=out, stderr=err)
    return code, json.loads(out.getvalue()), err.getvalue()


def test_cli_exact_check_passes_and_reports_the_rates() -> None:
    code, env, _ = _run([*BASE, "--n", "1500", "--sampler", "top-k:8"])
    assert code == 0 and env["status"] == "ok", env["errors"]
    data = env["data"]
    assert data["fidelity_mode"] == "exact" and data["consistent"] and data["p_value"] >= 0.01
    s = data["stats"]
    assert 0.0 < s["acceptance_rate"] < 1.0 and 0.0 < s["target_calls_saved"] < 1.0
    assert s["tokens"] == s["accepted"] + s["residual"] + s["bonus"]
    head = render_speculative(data).splitlines()[0]  # what the command prints without --json
    assert head.startswith(
        "speculative (draft pydoc-words:2, target pydoc-words:3, sampler top-k:8): accept 0."
    )
    assert "fidelity p=" in head and "target calls/token saved" in head


def test_cli_greedy_and_surprisal_modes() -> None:
    code, env, _ = _run([*BASE, "--n", "50", "--greedy", "--draft-sampler", "temperature:1.5"])
    assert code == 0 and env["data"]["matches_greedy"] is True and env["data"]["fidelity"] is None
    code, env, _ = _run([*BASE, "--n", "400", "--no-exact"])
    assert code == 0 and env["data"]["fidelity_mode"] == "reference" and env["data"]["consistent"]


def test_a_wrong_rule_is_exit_3_with_the_result_printed(monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = AcceptRule("no-coin", lambda u, qd, qt: np.asarray(qt >= qd), EXACT_RULE.residual)
    monkeypatch.setattr(speculation, "check_speculative", functools.partial(check_speculative, rule=wrong))
    code, env, _ = _run([*BASE, "--n", "1500"])
    assert code == 3 and env["status"] == "partial" and env["exit_code"] == 3
    assert env["data"]["consistent"] is False and env["data"]["p_value"] < 1e-3
    assert "not consistent with the target's distribution" in env["errors"][0]
    out, err = io.StringIO(), io.StringIO()
    assert main([*BASE, "--n", "300"], stdout=out, stderr=err) == 3  # gross: caught at n = 300 too
    assert "NOT consistent" in out.getvalue() and err.getvalue().startswith(
        "faithful: the speculative outputs"
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["speculative", "--target", "pydoc-words:3", "--draft", "pydoc:2"],
            "the draft model's vocabulary (105 ids) is not the target's (29 ids)",
        ),
        (["speculative", "--target", "pydoc-words", "--draft", "nope:1"], "unknown model spec 'nope:1'"),
        (
            [*BASE, "--greedy", "--sampler", "top-k:2"],
            "--greedy checks the target's argmax and takes no --sampler",
        ),
        ([*BASE, "--sampler", "top-q:2"], "bad --sampler"),
        ([*BASE, "--gamma", "0"], "--gamma must be >= 1"),
    ],
)
def test_bad_input_is_a_usage_error(argv: list[str], message: str) -> None:
    code, env, _ = _run(argv)
    assert code == 2 and env["status"] == "usage" and env["data"] is None
    assert message in env["errors"][0]


def test_processed_model_refuses_what_has_no_fixed_q() -> None:
    m = NGramModel.from_text("ab\nba\n", n=2)
    with pytest.raises(SamplingParameterError, match="no fixed q per prefix"):
        ProcessedModel(m, parse_sampler_spec("xtc:0.5"))
