"""compare over worker processes and a local Ray cluster: sharded by row, bit-identical to one process."""

from __future__ import annotations

import io
import json
import os
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from faithful.cli import main
from faithful.fidelity.harness import Comparison, compare_decoders
from faithful.fidelity.parallel import ParallelError, RowOffset, Runner, rows_per_prompt
from faithful.fidelity.specs import load_model, parse_decoder_list
from faithful.models import NGramModel
from faithful.rng import KeyedRNG

SPEC = "pydoc-words:2"
DECODERS = "sample,top-p:0.9,stochastic-beam:3,mbr:4@temperature:0.8,greedy"
ARGS: dict[str, Any] = {"n": 300, "max_new_tokens": 4, "seed": 5, "min_coverage": 0.5}


@pytest.fixture(scope="module")
def model() -> NGramModel:
    m = load_model(SPEC)
    assert isinstance(m, NGramModel)
    return m


@pytest.fixture(scope="module")
def single(model: NGramModel) -> Comparison:
    return compare_decoders(model, parse_decoder_list(DECODERS), **ARGS)


def _same(a: Comparison, b: Comparison) -> None:
    assert a.outputs == b.outputs  # every output in row order: identical counts
    da, db = a.to_dict(), b.to_dict()
    da.pop("seconds"), db.pop("seconds")
    assert da == db  # identical statistics, p-values included


def test_rows_per_prompt_is_read_from_the_decoder(model: NGramModel) -> None:
    want = {"sample": 1, "sample:3": 3, "stochastic-beam:3": 4, "mbr:4": 4, "top-p:0.9": 1}
    for spec, c in want.items():
        assert rows_per_prompt(model, parse_decoder_list(spec)[0], 4) == c, spec
    off = RowOffset(9, 40)
    assert (off.uniforms([0, 2], 3, 2) == KeyedRNG(9).uniforms([40, 42], 3, 2)).all()
    assert off.max_row == 2


def test_worker_processes_give_the_single_process_result(model: NGramModel, single: Comparison) -> None:
    seen: list[tuple[int, int]] = []
    with Runner(model, SPEC, workers=2, progress=lambda d, n: seen.append((d, n))) as runner:
        sharded = compare_decoders(model, parse_decoder_list(DECODERS), decode=runner.decode_outputs, **ARGS)
    _same(single, sharded)
    assert seen and seen[-1] == (300, 300) and len(seen) > 5  # shard by shard, per decoder
    assert all(d <= n for d, n in seen)


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[Any]:
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield ray
    ray.shutdown()


def test_a_local_ray_cluster_gives_the_single_process_result(
    model: NGramModel, single: Comparison, ray_cluster: Any
) -> None:
    # the model goes to the actors pickled (no spec): the path for a model built in Python
    with Runner(model, None, workers=2, ray_address="") as runner:
        sharded = compare_decoders(model, parse_decoder_list(DECODERS), decode=runner.decode_outputs, **ARGS)
    _same(single, sharded)
    assert ray_cluster.is_initialized()  # a cluster the runner joined is left running
    # more workers than the cluster's 2 CPUs: capped (an actor without a CPU would wait forever)
    choice = parse_decoder_list("sample")[0]
    with Runner(model, SPEC, workers=5, ray_address="") as runner:
        outs = runner.decode_outputs(model, choice, 300, 4, seed=5)
        assert runner._actors is not None and len(runner._actors) == 2
    assert outs == single.outputs["sample"]


def test_missing_ray_names_the_extra(model: NGramModel, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(ParallelError, match=r"pip install 'faithful\[ray\]'"):
        Runner(model, SPEC, ray_address="")
    out = io.StringIO()
    argv = ["compare", "--model", SPEC, "--decoders", "sample", "--n", "20", "--max-new-tokens", "3"]
    assert main([*argv, "--ray", "--json"], stdout=out, stderr=io.StringIO()) == 1
    env = json.loads(out.getvalue())
    assert env["status"] == "error" and "pip install 'faithful[ray]'" in env["errors"][0]


def test_bad_workers_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", "--model", SPEC, "--workers", "0"]) == 2
    assert "--workers must be >= 1" in capsys.readouterr().err
    with pytest.raises(ParallelError, match="workers must be an integer >= 1"):
        Runner(load_model("pydoc-words:2"), workers=0)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_cli_workers_progress_bar_on_a_terminal_only(monkeypatch: pytest.MonkeyPatch) -> None:
    argv = ["compare", "--model", SPEC, "--decoders", "sample", "--n", "200", "--max-new-tokens", "4"]
    argv += ["--min-coverage", "0.5", "--seed", "3"]
    plain, sharded = io.StringIO(), io.StringIO()
    assert main([*argv, "--json"], stdout=plain) == 0
    term = _Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    assert main([*argv, "--workers", "2"], stdout=sharded) == 0
    assert "faithful: [" in term.getvalue() and "200/200 outputs" in term.getvalue()
    # silent under --json, even on a terminal; the same data as one process
    quiet = _Terminal()
    monkeypatch.setattr(sys, "stderr", quiet)
    out = io.StringIO()
    assert main([*argv, "--workers", "2", "--json"], stdout=out) == 0
    assert quiet.getvalue() == ""
    a, b = json.loads(plain.getvalue())["data"], json.loads(out.getvalue())["data"]
    a.pop("seconds"), b.pop("seconds")
    assert a == b


def test_an_unreachable_ray_address_is_a_quick_clear_error() -> None:
    pytest.importorskip("ray")
    out = io.StringIO()
    argv = ["compare", "--model", SPEC, "--decoders", "sample", "--n", "20", "--max-new-tokens", "3"]
    assert main([*argv, "--ray", "127.0.0.1:1", "--json"], stdout=out, stderr=io.StringIO()) == 1
    err = json.loads(out.getvalue())["errors"][0]
    assert err.startswith("cannot reach a Ray cluster at '127.0.0.1:1'") and "ray start --head" in err


class DiesInAWorker:
    """An n-gram model that kills the process it runs in unless that is the one that built it."""

    def __init__(self, model: NGramModel) -> None:
        self.model, self.parent = model, os.getpid()
        self.vocab_size, self.eos_token_id = model.vocab_size, model.eos_token_id

    def start(self, prompts: Any) -> Any:
        if os.getpid() != self.parent:
            os._exit(9)  # as kill -9 would: no exception, no cleanup
        return self.model.start(prompts)

    def next_logprobs(self, state: Any) -> Any:
        return self.model.next_logprobs(state)

    def advance(self, state: Any, tokens: Any) -> Any:
        return self.model.advance(state, tokens)

    def select(self, state: Any, indices: Any) -> Any:
        return self.model.select(state, indices)


def test_a_worker_that_dies_is_a_clear_error(model: NGramModel) -> None:
    dying = DiesInAWorker(model)
    choice = parse_decoder_list("sample")[0]
    with (
        Runner(dying, None, workers=2) as runner,
        pytest.raises(ParallelError, match="a worker process died"),
    ):
        runner.decode_outputs(dying, choice, 100, 4, seed=1)
