"""Bad input to the referee's commands: a clear error and the documented exit code, nothing else printed.

Exit codes (faithful's cli docstring and README): 2 usage for what is wrong on the command line
(an unknown engine, a draft model whose vocabulary is not the target's), 1 error for a file
whose content is wrong (a malformed JSONL record), 3 when a check ran and failed.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from faithful.cli import main


def _run(argv: list[str]) -> tuple[int, dict[str, Any], str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main([*argv, "--json"], stdout=out, stderr=err)
    env = json.loads(out.getvalue())
    hout, herr = io.StringIO(), io.StringIO()
    assert main(argv, stdout=hout, stderr=herr) == code  # the same code without --json
    assert hout.getvalue() == ""  # nothing but the error, on stderr
    return code, env, herr.getvalue(), err.getvalue()


def test_unknown_engine(tmp_path: Path) -> None:
    code, env, err, _ = _run(["conformance", "--engines", "faithful,sglang", "--vocab", "50", "--n", "10"])
    assert code == 2 and env["status"] == "usage" and env["data"] is None
    assert env["errors"] == [
        "unknown engine 'sglang'; expected some of faithful, hf, torch-naive, vllm, flashinfer"
    ]
    assert err.startswith("faithful: error: unknown engine 'sglang'")


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['{"logits": [1.0, 2.0], "token": 0, "logprob": -1.3, "sampler": "sample"}', "{not json"], "line 2"),
        (
            ['{"logits": [1.0, 2.0], "token": 5, "logprob": -1.3, "sampler": "sample"}'],
            "line 1: tokens must be in [0, 2)",
        ),
        (['{"logits": [1.0, 2.0], "logprob": -1.3, "sampler": "sample"}'], "line 1: missing field 'token'"),
    ],
)
def test_malformed_jsonl_record(tmp_path: Path, lines: list[str], message: str) -> None:
    f = tmp_path / "records.jsonl"
    f.write_text("\n".join(lines) + "\n")
    code, env, err, _ = _run(["audit-logprobs", str(f)])
    assert code == 1 and env["status"] == "error" and env["data"] is None
    assert message in env["errors"][0] and err.startswith("faithful: error: ")


def test_draft_with_another_vocabulary() -> None:
    code, env, err, _ = _run(["speculative", "--target", "pydoc-words:3", "--draft", "pydoc:2", "--n", "10"])
    assert code == 2 and env["status"] == "usage" and env["data"] is None
    assert "the draft model's vocabulary (105 ids) is not the target's (29 ids)" in env["errors"][0]
    assert "use a draft trained with the target's tokenizer" in err
