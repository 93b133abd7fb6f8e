"""The logprob audit on records written by Hugging Face generate, by faithful, and by hand (wrong ones)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from faithful.cli import main
from faithful.processors import log_softmax
from faithful.referee.audit import AuditInputError, audit_logprobs, audit_records, read_records
from faithful.samplers import make_sampler

V = 48
HF_SETTINGS: list[dict[str, Any]] = [
    {"do_sample": True, "temperature": 0.7, "top_k": 0, "top_p": 0.8},
    {"do_sample": True, "temperature": 1.3, "top_k": 5, "top_p": 1.0},
    {"do_sample": True, "top_k": 0, "min_p": 0.1},
    {"do_sample": True, "top_k": 0, "typical_p": 0.7},
    {"do_sample": True, "top_k": 0, "repetition_penalty": 1.5, "top_p": 0.9},  # the record's history matters
]


def hf_records(settings: dict[str, Any], seed: int, steps: int = 6) -> list[dict[str, Any]]:
    """Run HF generate on a tiny random GPT-2; one record per step with HF's own reported logprob."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(seed)
    cfg = transformers.GPT2Config(
        n_layer=1, n_embd=32, n_head=2, vocab_size=V, n_positions=64, initializer_range=0.5,
        bos_token_id=0, eos_token_id=0, pad_token_id=0,
    )  # fmt: skip
    model = transformers.GPT2LMHeadModel(cfg).eval()
    prompt = torch.tensor([[3, 9, 4], [7, 1, 2]])
    out = model.generate(
        prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=steps,
        return_dict_in_generate=True, output_scores=True, output_logits=True, pad_token_id=0, **settings,
    )  # fmt: skip
    # HF's documented way to report the logprob of each chosen token: the processed scores, normalised
    reported = model.compute_transition_scores(out.sequences, out.scores, normalize_logits=True)
    # no min_new_tokens: it would ban EOS behind the stated settings' back (the audit calls such a token
    # impossible); a row's records stop at its EOS, after which generate pads
    records = []
    width = prompt.shape[1]
    for row in range(prompt.shape[0]):
        for step in range(len(out.scores)):
            token = int(out.sequences[row, width + step])
            records.append(
                {
                    "id": f"r{row}s{step}",
                    "logits": [float(x) for x in out.logits[step][row].double().tolist()],
                    "settings": settings,
                    "token": token,
                    "logprob": float(reported[row, step]),
                    "history": [int(t) for t in out.sequences[row, : width + step]],
                }
            )
            if token == 0:
                break
    return records


@pytest.mark.parametrize("settings", HF_SETTINGS, ids=lambda s: "+".join(f"{k}={v}" for k, v in s.items()))
def test_hf_generate_reports_processed_logprobs(settings: dict[str, Any]) -> None:
    records = hf_records(settings, seed=len(str(settings)))
    audit = audit_records(records)
    summary = audit.summary()
    assert summary["verdict"] == "processed", audit.to_dict()
    assert summary["counts"]["processed"] > 0  # the settings changed at least one chosen token's logprob
    assert summary["impossible_tokens"] == 0
    assert summary["max_abs_off_processed"] < 1e-4


def test_a_raw_reporting_engine_is_called_raw() -> None:
    records = hf_records(HF_SETTINGS[0], seed=5)
    for r in records:  # what an engine does when it reports the model's logprob, not the sampler's
        r["logprob"] = float(log_softmax(np.asarray([r["logits"]]))[0, r["token"]])
    summary = audit_records(records).summary()
    assert summary["verdict"] == "raw"
    assert summary["counts"]["raw"] > 0
    assert summary["max_abs_off_processed"] > 0.05


def test_faithful_reports_processed_logprobs_and_off_by_is_measured() -> None:
    rng = np.random.default_rng(0)
    z = rng.standard_normal((64, 200)) * 3
    sampler = make_sampler(temperature=0.8, top_p=0.9, min_p=0.02)
    res = sampler(z, rng=1)
    audit = audit_logprobs(z, res.tokens, res.logprobs, "temperature:0.8+top-p:0.9+min-p:0.02")
    assert audit.summary()["verdict"] == "processed"
    assert audit.summary()["counts"]["processed"] == 64
    # shifted by 0.1 nats: neither, and off by exactly that
    bad = audit_logprobs(z, res.tokens, res.logprobs - 0.1, sampler)
    assert bad.summary()["verdict"] == "neither"
    assert all(r.off_processed == pytest.approx(-0.1, abs=1e-9) for r in bad.records)
    # reported raw: classified raw, the gap to the processed one is exact
    raw = log_softmax(z)[np.arange(64), res.tokens]
    rr = audit_logprobs(z, res.tokens, raw, sampler)
    assert rr.summary()["verdict"] == "raw"
    assert rr.records[0].off_processed == pytest.approx(raw[0] - res.logprobs[0], abs=1e-12)


def test_hand_made_records() -> None:
    z = [math.log(p) for p in (0.5, 0.3, 0.15, 0.05)]
    base = {"logits": z, "sampler": "top-p:0.7"}
    recs = [
        {**base, "token": 0, "logprob": math.log(0.5 / 0.8)},  # processed
        {**base, "token": 1, "logprob": math.log(0.3)},  # raw
        {**base, "token": 1, "logprob": -3.0},  # neither
        {**base, "token": 3, "logprob": math.log(0.05)},  # raw, and the token is outside top-p's set
        {"logits": z, "sampler": "sample", "token": 2, "logprob": math.log(0.15)},  # both: no truncation
    ]
    audit = audit_records(recs)
    assert [r.verdict for r in audit.records] == ["processed", "raw", "neither", "raw", "both"]
    assert audit.records[3].token_possible is False and audit.records[3].processed == -math.inf
    assert audit.summary()["verdict"] == "mixed"
    assert audit.summary()["impossible_tokens"] == 1


def test_top_logprobs_input_exact_when_the_tail_cannot_matter() -> None:
    rng = np.random.default_rng(3)
    z = rng.standard_normal(1000) * 2
    lp = log_softmax(z[None, :])[0]
    top = np.argsort(-lp)[:20]
    sampler = make_sampler(top_k=5)
    res = sampler(z[None, :], rng=4)
    rec = {
        "top_logprobs": {str(t): float(lp[t]) for t in top},
        "sampler": "top-k:5",
        "token": int(res.tokens[0]),
        "logprob": float(res.logprobs[0]),
        "vocab_size": 1000,
    }
    r = audit_records([rec]).records[0]
    assert r.verdict == "processed" and r.processed == pytest.approx(float(res.logprobs[0]), abs=1e-12)
    # top-p 0.999 needs tokens beyond the top 20: undetermined, never guessed
    rec2 = {**rec, "sampler": "top-p:0.999"}
    assert audit_records([rec2]).records[0].verdict == "undetermined"
    # a list of pairs and HF keys work the same
    rec3 = {**rec, "top_logprobs": [[int(t), float(lp[t])] for t in top], "settings": {"top_k": 5}}
    del rec3["sampler"]
    assert audit_records([rec3]).records[0].verdict == "processed"


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"sampler": "top-p:0.9", "token": 0, "logprob": -1.0}, "exactly one of `logits`"),
        ({"logits": [0.0, 1.0], "sampler": "top-p:1.5", "token": 0, "logprob": -1.0}, "top_p"),
        (
            {"logits": [0.0, 1.0], "sampler": "top-p:0.9", "token": 5, "logprob": -1.0},
            "tokens must be in [0, 2)",
        ),
        ({"logits": [0.0, 1.0], "sampler": "top-p:0.9", "token": 0, "logprob": 0.5}, "<= 0"),
        ({"logits": [0.0, 1.0], "sampler": "top-p:0.9", "logprob": -1.0}, "missing field 'token'"),
        (
            {"logits": [0.0, 1.0], "settings": {"top_q": 1}, "token": 0, "logprob": -1.0},
            "unknown Hugging Face",
        ),
        ({"logits": [0.0, "x"], "sampler": "sample", "token": 0, "logprob": -1.0}, "must be a number"),
        (
            {"top_logprobs": {"0": -0.1, "1": -0.2}, "sampler": "sample", "token": 0, "logprob": -1.0},
            "summing",
        ),
        ({"logits": [0.0, 1.0], "token": 0, "logprob": -1.0}, "sampler settings"),
        ({"logits": [0.0], "sampler": "sample", "settings": {}, "token": 0, "logprob": 0.0}, "not both"),
    ],
)
def test_malformed_records_are_named(record: dict[str, Any], message: str) -> None:
    with pytest.raises(AuditInputError, match="record 0") as info:
        audit_records([record])
    assert message in str(info.value)


def test_cli_audit_logprobs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    z = [math.log(p) for p in (0.5, 0.3, 0.2)]
    f = tmp_path / "recs.jsonl"
    f.write_text(
        json.dumps({"logits": z, "sampler": "top-p:0.6", "token": 0, "logprob": math.log(0.5 / 0.8)})
        + "\n\n"
        + json.dumps({"logits": z, "settings": {"top_p": 0.6}, "token": 1, "logprob": math.log(0.3)})
        + "\n"
    )
    assert main(["audit-logprobs", str(f), "--json"]) == 0
    env = json.loads(capsys.readouterr().out)
    assert env["command"] == "audit-logprobs" and env["status"] == "ok"
    assert env["data"]["summary"]["counts"]["processed"] == 1 and env["data"]["summary"]["counts"]["raw"] == 1
    assert main(["audit-logprobs", str(f)]) == 0
    text = capsys.readouterr().out
    assert "mixed" in text and "raw" in text
    f.write_text('{"logits": [0.0], "sampler": "sample", "token": 0, "logprob": 0.0}\nnot json\n')
    assert main(["--json", "audit-logprobs", str(f)]) == 1
    env = json.loads(capsys.readouterr().out)
    assert env["status"] == "error" and "line 2" in env["errors"][0]
    assert main(["audit-logprobs", str(tmp_path / "missing.jsonl")]) == 1
    assert "cannot read" in capsys.readouterr().err


def test_read_records_names_lines(tmp_path: Path) -> None:
    f = tmp_path / "r.jsonl"
    f.write_text('\n{"logits": [0.0, 1.0], "sampler": "sample", "token": 3, "logprob": -1.0}\n')
    recs, names = read_records(f)
    with pytest.raises(AuditInputError, match="line 2"):
        audit_records(recs, names=names)


def _audit_file(tmp_path: Path, records: list[dict[str, Any]]) -> Path:
    f = tmp_path / "recs.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in records))
    return f


def test_cli_audit_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    z = [math.log(p) for p in (0.5, 0.3, 0.2)]
    processed = {"logits": z, "sampler": "top-p:0.6", "token": 0, "logprob": math.log(0.5 / 0.8)}
    raw = {"logits": z, "sampler": "top-p:0.6", "token": 1, "logprob": math.log(0.3)}
    neither = {"logits": z, "sampler": "top-p:0.6", "token": 0, "logprob": math.log(0.4)}
    # token 2 is outside top-p 0.6 (q = 0): the engine did not sample from the stated settings,
    # even though it reports the raw logprob
    impossible = {"logits": z, "sampler": "top-p:0.6", "token": 2, "logprob": math.log(0.2)}
    # every record processed or raw: 0, and the raw ones are said in the summary
    assert main(["audit-logprobs", str(_audit_file(tmp_path, [processed, raw]))]) == 0
    text = capsys.readouterr().out
    assert "1 records report the raw model's logprob: a legitimate answer" in text
    for bad, what in ((neither, "1 match neither"), (impossible, "1 chose a token of probability 0")):
        f = _audit_file(tmp_path, [processed, raw, bad])
        assert main(["audit-logprobs", str(f), "--json"]) == 3
        env = json.loads(capsys.readouterr().out)
        assert env["status"] == "partial" and env["exit_code"] == 3
        assert env["data"]["summary"]["records"] == 3  # the result is there in full
        assert what in env["errors"][0] and "of 3 records" in env["errors"][0]
        assert main(["audit-logprobs", str(f)]) == 3
        out = capsys.readouterr()
        assert "logprob audit: 3 records" in out.out and what in out.err
