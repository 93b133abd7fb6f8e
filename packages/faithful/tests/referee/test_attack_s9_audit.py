"""Session 9 attack on ``faithful audit-logprobs``: hostile records and files.

Each one used to end in "unexpected error (ZeroDivisionError / ValueError / RecursionError)" or
to be judged as if it were a real record. A bad record is an error naming its line (exit 1), and
nothing is judged.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from faithful.cli import main
from faithful.referee.audit import AuditInputError, audit_records


def _run(path: Path) -> tuple[int, dict[str, Any], str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(["audit-logprobs", str(path), "--json"], stdout=out, stderr=err)
    env = json.loads(out.getvalue())
    herr = io.StringIO()
    assert main(["audit-logprobs", str(path)], stdout=io.StringIO(), stderr=herr) == code
    return code, env, herr.getvalue()


TOP = {"top_logprobs": {"0": -0.1, "1": -2.5}, "sampler": "top-k:1", "token": 0, "logprob": 0.0}

BAD_RECORDS = [
    # no token with a positive probability: nothing was sampled from this
    ({**TOP, "top_logprobs": {"0": "-inf", "1": "-inf"}}, "top_logprobs"),
    # a vocabulary no engine has: the tail spread was allocated (Maximum allowed dimension exceeded)
    ({**TOP, "vocab_size": 10**20, "sampler": "top-p:0.9"}, "vocab_size"),
    # a token outside the stated vocabulary is no record of a draw from it
    ({**TOP, "vocab_size": 5, "token": 9}, "token"),
    # top-k ids that are no ids: 1.5 and True were read as token 1, U+0661 (an Arabic-Indic one) too,
    # and 2**70 was an internal OverflowError; a token past any vocabulary was judged "probability 0"
    ({**TOP, "top_logprobs": [[1.5, -0.1], [0, -2.5]], "token": 1}, "top_logprobs"),
    ({**TOP, "top_logprobs": [[True, -0.1], [0, -2.5]], "token": 1}, "top_logprobs"),
    ({**TOP, "top_logprobs": {"\u0661": -0.1, "0": -2.5}, "token": 1}, "top_logprobs"),
    ({**TOP, "top_logprobs": [[2**70, -0.1], [0, -2.5]]}, "top_logprobs"),
    ({**TOP, "token": 2**70}, "token"),
    # history ids outside the stated vocabulary, or that are no ids
    ({**TOP, "vocab_size": 5, "sampler": "repetition-penalty:1.3", "history": [99]}, "history"),
    ({"logits": [0.0, 1.0, 2.0], "sampler": "repetition-penalty:1.3", "token": 2, "logprob": -0.4,
      "history": [True, 2]}, "history"),
]  # fmt: skip


@pytest.mark.parametrize(("record", "field"), BAD_RECORDS)
def test_a_hostile_record_is_a_clear_error_naming_the_field(tmp_path: Path, record: Any, field: str) -> None:
    with pytest.raises(AuditInputError, match=field):
        audit_records([record])
    f = tmp_path / "records.jsonl"
    f.write_text(json.dumps(record) + "\n")
    code, env, err = _run(f)
    assert code == 1 and env["status"] == "error" and env["data"] is None
    assert "line 1" in env["errors"][0] and field in env["errors"][0]
    assert "unexpected error" not in err and err.startswith("faithful: error: ")


def test_json_nested_past_the_stack_is_a_clear_error_naming_the_line(tmp_path: Path) -> None:
    f = tmp_path / "records.jsonl"
    ok = json.dumps({"logits": [0.0, 1.0], "sampler": "sample", "token": 0, "logprob": -1.3133})
    f.write_text(ok + "\n" + "[" * 100_000 + "]" * 100_000 + "\n")
    code, env, err = _run(f)
    assert code == 1 and env["status"] == "error"
    assert "line 2" in env["errors"][0] and "unexpected error" not in err


@pytest.mark.parametrize(
    "top",
    [
        {"0": -0.1, "1": -2.5, "2": "-inf"},  # a masked token reported at -inf (ZeroDivisionError)
        {"0": -1e-6, "1": -40.0},  # a tail of 2.3e11 tokens at most 4e-18 each (ValueError)
        {"0": -1e-6, "1": -745.0},  # a subnormal smallest probability (OverflowError)
    ],
)
def test_a_legal_top_k_record_is_audited(top: dict[str, Any]) -> None:
    rec = {"top_logprobs": top, "sampler": "top-k:1", "token": 0, "logprob": 0.0}
    assert audit_records([rec]).records[0].verdict in ("processed", "both")  # both: raw is -1e-6
    spec = {**rec, "sampler": "top-p:0.5"}
    assert audit_records([spec]).records[0].verdict in ("processed", "both", "undetermined")


_PEAK = """
import io, resource, sys
from faithful.cli import main
code = main(["audit-logprobs", sys.argv[1], "--json"], stdout=io.StringIO(), stderr=io.StringIO())
print(code, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def _peak_kib(path: Path) -> tuple[int, int]:
    out = subprocess.run([sys.executable, "-c", _PEAK, str(path)], capture_output=True, text=True, check=True)
    code, kib = out.stdout.split()
    return int(code), int(kib)


def test_a_huge_file_is_read_one_record_at_a_time(tmp_path: Path) -> None:
    # 32 records of 50,000 logits (13 MB): reading the file whole held ~7 times its size at once
    z = np.round(np.random.default_rng(0).standard_normal(50_000), 4).tolist()
    line = json.dumps({"logits": z, "sampler": "top-p:0.9", "token": 0, "logprob": -10.0}) + "\n"
    one, many = tmp_path / "one.jsonl", tmp_path / "many.jsonl"
    one.write_text(line)
    many.write_text(line * 32)
    size_kib = many.stat().st_size // 1024
    (code1, peak1), (code32, peak32) = _peak_kib(one), _peak_kib(many)
    assert code1 == code32 == 3  # ran to the end: every record judged ("neither")
    assert peak32 - peak1 < size_kib // 4, (peak1, peak32, size_kib)


def test_a_record_id_cannot_write_to_the_terminal(tmp_path: Path) -> None:
    hostile = "\x1b]0;owned\x07\x1b[32mok\x1b[0m\nforged row\u202e"
    rec = {"id": hostile, "logits": [0.0, 1.0, 2.0], "sampler": "top-p:0.9", "token": 2, "logprob": -0.4}
    f = tmp_path / "records.jsonl"
    f.write_text(json.dumps(rec) + "\n")
    out = io.StringIO()
    assert main(["audit-logprobs", str(f)], stdout=out, stderr=io.StringIO()) == 3
    text = out.getvalue()
    assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text
    assert "?]0;owned??[32mok?[0m?forged row?" in text  # one table row, every control shown as '?'
    code, env, _ = _run(f)
    assert code == 3 and env["data"]["records"][0]["id"] == hostile  # --json keeps it exactly
