"""A small-vocabulary neural model (tiny random GPT-2) enumerated exactly, through the CLI."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from faithful.cli import main  # noqa: E402
from faithful.fidelity import enumerate_sequences  # noqa: E402
from faithful.fidelity.specs import load_model  # noqa: E402


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(
        n_layer=1,
        n_embd=32,
        n_head=2,
        vocab_size=6,
        n_positions=16,
        initializer_range=0.5,
        bos_token_id=1,
        eos_token_id=0,
        pad_token_id=0,
    )
    path = tmp_path_factory.mktemp("tiny-gpt2")
    transformers.GPT2LMHeadModel(cfg).eval().save_pretrained(path)
    return path


def test_hf_model_enumerates_and_sums_to_one(model_dir: Path) -> None:
    lm = load_model(str(model_dir))
    d = enumerate_sequences(lm, max_length=4, threshold=0.0)
    assert d.covered_mass == pytest.approx(1.0, abs=1e-9)
    assert len(d.probs) == sum(5**k for k in range(4)) + 5**4  # EOS at each step, or 4 non-EOS tokens


def test_compare_exact_on_a_hf_directory(model_dir: Path) -> None:
    out = io.StringIO()
    code = main(
        [
            "compare",
            "--model",
            f"hf:{model_dir}",
            "--decoders",
            "greedy,sample",
            "--n",
            "300",
            "--max-new-tokens",
            "4",
            "--exact",
            "--json",
        ],
        stdout=out,
        stderr=io.StringIO(),
    )
    env = json.loads(out.getvalue())
    assert code == 0, env["errors"]
    rows = {r["decoder"]: r for r in env["data"]["table"]}
    assert env["data"]["mode"] == "exact"
    assert rows["sample"]["consistent"] and not rows["greedy"]["consistent"]


def test_generate_from_a_hf_directory_with_its_tokenizer(tmp_path: Path) -> None:
    """`faithful generate` on a model directory as users have them: weights and a tokenizer, made here."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    torch.manual_seed(0)
    cfg = transformers.GPT2Config(
        n_layer=1,
        n_embd=32,
        n_head=2,
        vocab_size=6,
        n_positions=32,
        bos_token_id=1,
        eos_token_id=0,
        pad_token_id=0,
    )
    transformers.GPT2LMHeadModel(cfg).eval().save_pretrained(tmp_path)
    vocab = {"<eos>": 0, "<bos>": 1, "a": 2, "b": 3, "c": 4, " ": 5}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<eos>"))
    tok.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    tok.decoder = decoders.Fuse()
    transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<eos>", bos_token="<bos>", pad_token="<eos>"
    ).save_pretrained(tmp_path)
    for decoder, extra in (("greedy", []), ("beam:2", []), ("sample", ["--sampler", "top-k:3"])):
        out = io.StringIO()
        code = main(
            [
                "generate",
                "--model",
                str(tmp_path),
                "--decoder",
                decoder,
                *extra,
                "--prompt",
                "ab",
                "--max-new-tokens",
                "6",
                "--seed",
                "1",
                "--json",
            ],
            stdout=out,
            stderr=io.StringIO(),
        )
        env = json.loads(out.getvalue())
        assert code == 0, env["errors"]
        texts = env["data"]["texts"]
        assert texts and all(set(t) <= set("abc ") for t in texts), texts
        assert all(len(toks) >= 1 for toks in env["data"]["tokens"])


def test_generate_without_a_tokenizer_says_how_to_fix_it(model_dir: Path) -> None:
    err = io.StringIO()
    code = main(
        ["generate", "--model", str(model_dir), "--prompt", "ab", "--max-new-tokens", "3"],
        stdout=io.StringIO(),
        stderr=err,
    )
    assert code != 0 and "save_pretrained" in err.getvalue() and "Traceback" not in err.getvalue()
