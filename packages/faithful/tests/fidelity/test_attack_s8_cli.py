"""Session 8 attack on faithful's CLI: counts too large to allocate, a top-k past int64."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from faithful.cli import main


def _run(argv: list[str]) -> tuple[int, dict[str, Any], str]:
    out, err = io.StringIO(), io.StringIO()
    code = main([*argv, "--json"], stdout=out, stderr=err)
    return code, json.loads(out.getvalue()), err.getvalue()


@pytest.mark.parametrize(
    ("argv", "option", "most"),
    [
        # before: "unexpected error (MemoryError): Unable to allocate 14.6 TiB", exit 1
        (["coin", "--n", "1000000000000"], "--n", 10**8),
        # before: "unexpected error (ValueError): Maximum allowed dimension exceeded", exit 1
        (
            ["generate", "--model", "pydoc", "--max-new-tokens", "99999999999999999999"],
            "--max-new-tokens",
            10**6,
        ),
        (["compare", "--model", "pydoc", "--n", "1000000000000"], "--n", 10**8),
        (["compare", "--model", "pydoc", "--workers", "100000"], "--workers", 1024),
        (["speculative", "--target", "pydoc", "--draft", "pydoc:2", "--gamma", "100000"], "--gamma", 1024),
    ],
)
def test_a_count_too_large_to_allocate_is_a_usage_error(argv: list[str], option: str, most: int) -> None:
    code, env, err = _run(argv)
    assert code == 2 and env["status"] == "usage" and env["exit_code"] == 2 and env["data"] is None
    assert f"{option} must be at most {most}, got" in env["errors"][0]
    assert "Traceback" not in err


def test_a_top_k_past_int64_is_a_usage_error_not_one_token_repeated() -> None:
    # before: exit 0 and a text of one character repeated (the kernel drew the last token every time)
    code, env, _ = _run(["generate", "--model", "pydoc", "--sampler", "top-k:99999999999999999999999"])
    assert code == 2 and env["status"] == "usage"
    assert "`top_k` must be an int >= 1 and <= 2**63 - 1" in env["errors"][0]
    code, env, _ = _run(
        [
            "generate",
            "--model",
            "pydoc",
            "--sampler",
            f"top-k:{2**63 - 1}",
            "--seed",
            "3",
            "--max-new-tokens",
            "40",
        ]
    )
    plain = _run(["generate", "--model", "pydoc", "--seed", "3", "--max-new-tokens", "40"])[1]
    assert code == 0 and env["data"]["tokens"] == plain["data"]["tokens"]


def test_a_conformance_vocabulary_too_large_to_allocate_is_a_usage_error() -> None:
    # before: "unexpected error (MemoryError): Unable to allocate 1.46 TiB", exit 1
    argv = [
        "conformance",
        "--engines",
        "faithful",
        "--settings",
        "top-k:2",
        "--vocab",
        "100000000000",
        "--n",
        "10",
    ]
    code, env, err = _run(argv)
    assert code == 2 and env["status"] == "usage"
    assert env["errors"] == ["vocabulary sizes must be >= 2 and <= 1048576, got 100000000000"]
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "argv",
    [
        # before: "unexpected error (MemoryError)" after [<bos>] * (n - 1), exit 1
        ["generate", "--model", "pydoc:99999999999", "--max-new-tokens", "3"],
        # before: minutes and tens of GB of training, then whatever the machine did
        ["generate", "--model", "pydoc-words:25", "--max-new-tokens", "3"],
        ["compare", "--model", "pydoc:128", "--n", "2"],
    ],
)
def test_an_ngram_order_past_the_limit_is_a_usage_error_before_training(argv: list[str]) -> None:
    code, env, err = _run(argv)
    assert code == 2 and env["status"] == "usage" and env["data"] is None, env
    assert "must be from 1 to 24" in env["errors"][0] and "square of its order" in env["errors"][0]
    assert "Traceback" not in err


def test_the_highest_order_allowed_still_trains() -> None:
    code, env, _ = _run(["generate", "--model", "pydoc-words:24", "--max-new-tokens", "3", "--seed", "1"])
    assert code == 0, env
