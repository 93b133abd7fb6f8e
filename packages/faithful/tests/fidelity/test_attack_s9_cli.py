"""Session 9 attack on faithful's CLI: a coin decoder the coin cannot run is a usage error (exit 2).

Everything ``coin`` does follows from its command line (no model file), so a decoder it cannot run
is a bad command line: penalties with no history to act on, token ids past the coin's faces, a mask
that removes every face. They exited 1 with library wording ("`repetition_penalty` needs `history`").
"""

from __future__ import annotations

import io
import json

import pytest
from faithful.cli import main


@pytest.mark.parametrize(
    ("decoder", "words"),
    [
        ("repetition-penalty:1.3", "no history"),
        ("presence:0.5", "no history"),
        ("no-repeat-ngram:2", "no history"),
        ("dry:0.8", "no history"),
        ("logit-bias:5=1", "outside [0, 2)"),
        ("allowed-tokens:7", "outside [0, 2)"),
        ("forbidden-tokens:0,1", "no token left"),
    ],
)
def test_a_decoder_the_coin_cannot_run_is_a_usage_error(decoder: str, words: str) -> None:
    out, err = io.StringIO(), io.StringIO()
    code = main(["coin", "--decoder", decoder, "--json"], stdout=out, stderr=err)
    env = json.loads(out.getvalue())
    assert code == 2 and env["status"] == "usage" and env["exit_code"] == 2 and env["data"] is None
    assert env["errors"][0].startswith(f"bad --decoder {decoder!r}: ") and words in env["errors"][0]


@pytest.mark.parametrize(
    "decoder", ["greedy", "top-p:0.9+min-p:0.1", "xtc:0.5", "logit-bias:1=-inf", "mirostat:3"]
)
def test_decoders_the_coin_can_run_still_run(decoder: str) -> None:
    out = io.StringIO()
    assert main(["coin", "--decoder", decoder, "--n", "50", "--json"], stdout=out, stderr=io.StringIO()) == 0
    assert sum(json.loads(out.getvalue())["data"]["counts"]) == 50


# -- commas inside a spec's own values, in the comma-separated lists of compare and conformance --------


def test_a_decoder_list_keeps_the_commas_of_multi_token_values() -> None:
    from faithful.fidelity.specs import parse_decoder_list

    labels = [
        c.label
        for c in parse_decoder_list(
            "greedy,sample+forbidden-tokens:1,2,top-p:0.9+logit-bias:3=2,7=-1,beam:4,length_penalty=0.6"
        )
    ]
    assert labels == [
        "greedy",
        "sample+forbidden-tokens:1,2",
        "top-p:0.9+logit-bias:3=2,7=-1",
        "beam:4,length_penalty=0.6",
    ]


def test_conformance_settings_keep_the_commas_of_multi_token_values() -> None:
    out = io.StringIO()
    argv = ["conformance", "--engines", "faithful", "--vocab", "50", "--n", "20", "--reps", "19"]
    setting = "logit-bias:3=2.5,7=-1+repetition-penalty:1.3"
    code = main([*argv, "--settings", f"{setting},top-k:5", "--json"], stdout=out, stderr=io.StringIO())
    env = json.loads(out.getvalue())
    assert code == 0, env["errors"]
    assert [c["setting"] for c in env["data"]["cells"]] == [setting, "top-k:5"]
