"""The faithful command line end to end: coin, compare, generate; envelopes, exit codes, errors."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

import pytest
from faithful import cli
from faithful.cli import main

CORPUS = "ab\nabc\nb\nba\ncab\naa\nbca\nabcab\n"


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def envelope(*argv: str) -> tuple[int, dict[str, Any]]:
    code, out, _ = run(*argv, "--json")
    env = json.loads(out)
    assert set(env) == {"version", "command", "status", "exit_code", "data", "errors"}
    assert env["exit_code"] == code and env["version"] == cli.ENVELOPE_VERSION
    return code, env


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text(CORPUS)
    return path


def test_coin_default_is_the_essay(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run("coin")
    assert code == 0 and err == ""
    assert "H" * 20 in out
    assert "H: 20, T: 0" in out and "6.416e-06" in out
    assert "not what the model's distribution produces" in out


def test_coin_json_envelope() -> None:
    code, env = envelope("coin", "--p", "0.55", "0.45", "--n", "20", "--decoder", "sample", "--seed", "3")
    assert code == 0 and env["status"] == "ok" and env["command"] == "coin" and env["errors"] == []
    data = env["data"]
    assert sum(data["counts"]) == 20 and len(data["tosses"]) == 20
    k = data["counts"][0]
    assert data["probability_of_counts"] == pytest.approx(math.comb(20, k) * 0.55**k * 0.45 ** (20 - k))
    assert data["decoder_q"] == pytest.approx([0.55, 0.45])


def test_coin_three_faces_and_greedy_numbers() -> None:
    code, env = envelope("coin", "--p", "0.5", "0.3", "0.2", "--n", "5")
    assert code == 0 and env["data"]["counts"] == [5, 0, 0]
    assert env["data"]["probability_of_counts"] == pytest.approx(0.5**5)


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (("coin", "--n", "0"), "--n must be >= 1"),
        (("coin", "--decoder", "bogus"), "valid parts"),
        (("coin", "--p", "0.5", "0.6"), "sum to 1"),
        (("compare", "--model", "pydoc", "--n", "0"), "--n must be >= 1"),
        (("compare", "--model", "pydoc", "--decoders", "greedy,warp:9"), "Decoders: greedy"),
        (("compare", "--model", "nosuch:thing"), "unknown model spec"),
        (("compare", "--model", "ngram:/nonexistent/file.txt"), "no text file"),
        (("generate", "--model", "pydoc", "--decoder", "teleport"), "unknown decoder"),
        (("frobnicate",), "invalid choice"),
        ((), None),
    ],
)
def test_bad_input_is_a_clear_usage_error(argv: tuple[str, ...], needle: str | None) -> None:
    if not argv:
        code, out, _ = run()
        assert code == 0 and "usage: faithful" in out
        code, env = envelope()
        assert code == 2 and "no command" in env["errors"][0]
        return
    code, out, err = run(*argv)
    assert code == 2 and out == ""
    assert needle in err and "Traceback" not in err
    code, env = envelope(*argv)
    assert code == 2 and env["status"] == "usage" and needle in env["errors"][0]


def test_compare_exact_end_to_end(corpus: Path) -> None:
    code, out, _ = run(
        "compare",
        "--model",
        f"ngram:{corpus}:2",
        "--decoders",
        "greedy,sample,top-p:0.8,beam:3",
        "--n",
        "400",
        "--max-new-tokens",
        "6",
    )
    assert code == 0
    assert "mode: exact" in out
    for name in ("greedy", "sample", "top-p:0.8", "beam:3"):
        assert name in out
    code, env = envelope(
        "compare",
        "--model",
        f"ngram:{corpus}:2",
        "--decoders",
        "greedy,sample",
        "--n",
        "400",
        "--max-new-tokens",
        "6",
    )
    data = env["data"]
    assert code == 0 and data["mode"] == "exact"
    rows = {r["decoder"]: r for r in data["table"]}
    assert rows["greedy"]["consistent"] is False and rows["sample"]["consistent"] is True
    assert rows["greedy"]["tv"] > rows["greedy"]["tv_null_q95"]
    assert data["decoders"]["sample"]["sequence"]["covered_mass"] > 0.99


def test_compare_reference_mode_and_report(corpus: Path, tmp_path: Path) -> None:
    report = tmp_path / "report"
    code, env = envelope(
        "compare",
        "--model",
        f"ngram:{corpus}:2",
        "--decoders",
        "greedy,sample",
        "--n",
        "200",
        "--max-new-tokens",
        "12",
        "--no-exact",
        "--report",
        str(report),
    )
    assert code == 0 and env["data"]["mode"] == "reference"
    rows = {r["decoder"]: r for r in env["data"]["table"]}
    assert rows["greedy"]["surprisal_gap"] < 0 and rows["sample"]["consistent"]
    index = Path(env["data"]["report"])
    assert index == (report / "index.html").resolve() and index.is_file()
    html = index.read_text()
    assert "<table>" in html and "fidelity.png" in html and "lengths.png" in html
    for png in ("fidelity.png", "lengths.png", "rank_frequency.png"):
        assert (report / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((report / "comparison.json").read_text())["mode"] == "reference"


def test_compare_exact_on_a_model_that_cannot_be_enumerated_is_an_error(corpus: Path) -> None:
    argv = (
        "compare",
        "--model",
        f"ngram:{corpus}:2",
        "--decoders",
        "sample",
        "--n",
        "10",
        "--max-new-tokens",
        "40",
        "--threshold",
        "0",
        "--exact",
    )
    code, out, err = run(*argv)
    assert code == 1 and out == ""
    assert "exact metrics need an enumerable model" in err and "without --exact" in err
    code, env = envelope(*argv)
    assert (
        code == 1
        and env["status"] == "error"
        and "exact metrics need an enumerable model" in env["errors"][0]
    )
    low_coverage = (
        "compare",
        "--model",
        f"ngram:{corpus}:2",
        "--decoders",
        "sample",
        "--n",
        "10",
        "--max-new-tokens",
        "12",
        "--threshold",
        "0.01",
        "--exact",
    )
    code, _, err = run(*low_coverage)
    assert code == 1 and "covered only" in err and "lower --threshold" in err


def test_compare_prompt_is_encoded(corpus: Path) -> None:
    code, env = envelope(
        "compare",
        "--model",
        f"ngram:{corpus}:2",
        "--decoders",
        "greedy",
        "--n",
        "5",
        "--max-new-tokens",
        "4",
        "--prompt",
        "ab",
    )
    assert code == 0 and len(env["data"]["prompt"]) == 2


def test_generate_end_to_end(corpus: Path) -> None:
    code, out, _ = run(
        "generate",
        "--model",
        f"ngram:{corpus}:3",
        "--decoder",
        "greedy",
        "--prompt",
        "ab",
        "--max-new-tokens",
        "5",
    )
    assert code == 0 and out.strip() != ""
    code, env = envelope(
        "generate",
        "--model",
        f"ngram:{corpus}:3",
        "--decoder",
        "sample",
        "--sampler",
        "top-p:0.9",
        "--prompt",
        "a",
        "--max-new-tokens",
        "5",
        "--seed",
        "1",
    )
    assert code == 0 and len(env["data"]["texts"]) == 1 and env["data"]["seed"] == 1
    _, env2 = envelope(
        "generate",
        "--model",
        f"ngram:{corpus}:3",
        "--decoder",
        "sample",
        "--sampler",
        "top-p:0.9",
        "--prompt",
        "a",
        "--max-new-tokens",
        "5",
        "--seed",
        "1",
    )
    assert env2["data"]["texts"] == env["data"]["texts"]
    code, env = envelope(
        "generate", "--model", f"ngram:{corpus}:3", "--decoder", "beam:2", "--max-new-tokens", "5"
    )
    assert code == 0 and len(env["data"]["texts"]) == 2
    code, _, err = run("generate", "--model", f"ngram:{corpus}:3", "--sampler", "top-q:2")
    assert code == 2 and "valid parts" in err


def test_interrupt_and_unexpected_errors_and_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(args: Any) -> Any:
        raise KeyboardInterrupt

    def broken(args: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setitem(cli.COMMANDS, "coin", interrupted)
    code, env = envelope("coin")
    assert code == 130 and env["status"] == "interrupted"
    monkeypatch.setitem(cli.COMMANDS, "coin", broken)
    code, _, err = run("coin")
    assert code == 1 and "boom" in err and "--traceback" in err and "Traceback" not in err
    code, _, err = run("coin", "--traceback")
    assert code == 1 and "Traceback" in err and "RuntimeError: boom" in err
