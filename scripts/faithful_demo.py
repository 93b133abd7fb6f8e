"""faithful's part of `make demo`: the essay's coin, then decoders measured against a pydoc model.

Usage: python scripts/faithful_demo.py OUTDIR

1. 20 tosses of a [0.55, 0.45] coin, greedy then sampled: greedy gives 20 heads, an outcome of
   probability 6.4e-06 under the model.
2. `faithful compare` on `pydoc-words` (a character trigram over the words of Python's
   pydoc_data.topics, words of at most 6 characters): small enough to enumerate, so each decoder
   gets its exact total variation to the model's distribution.
3. `faithful compare` on `pydoc` (a character 4-gram over the lines of that text): too large to
   enumerate, so each decoder gets the surprisal check against exact samples.
4. `faithful conformance`: faithful, Hugging Face and a textbook torch sampler against the exact
   distribution (exit 3: HF's and torch's top-p drop tokens tied at the cutoff).
5. `faithful speculative`: a character bigram drafts for a 4-gram; the acceptance rate, the
   target calls saved, and the fidelity p of the outputs against the 4-gram's exact distribution.

Both comparisons write an HTML report with charts into OUTDIR; the script prints where.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from faithful.cli import main

DECODERS = "greedy,sample,top-p:0.9,temperature:0.7,beam:4,stochastic-beam:4"


def step(title: str, argv: list[str], expect: int = 0) -> None:
    """Run one command; any exit code but ``expect`` stops the demo."""
    print(f"\n=== {title}\n$ faithful {' '.join(argv)}\n", flush=True)
    code = main(argv)
    if code != expect:
        raise SystemExit(f"faithful demo: `faithful {' '.join(argv)}` exited with {code}, expected {expect}")


def run(outdir: Path) -> None:
    """Run the three demo steps, writing reports under ``outdir``."""
    started = time.perf_counter()
    exact_dir, pydoc_dir = outdir / "faithful-exact", outdir / "faithful-pydoc"
    step(
        "the essay's coin, decoded greedily",
        ["coin", "--p", "0.55", "0.45", "--n", "20", "--decoder", "greedy"],
    )
    step(
        "the same coin, sampled",
        ["coin", "--p", "0.55", "0.45", "--n", "20", "--decoder", "sample", "--seed", "7"],
    )
    step(
        "exact fidelity: a character trigram over pydoc's words, enumerated",
        [
            "compare",
            "--model",
            "pydoc-words",
            "--decoders",
            DECODERS,
            "--n",
            "2000",
            "--max-new-tokens",
            "6",
            "--min-coverage",
            "0.9",
            "--report",
            str(exact_dir),
        ],
    )
    step(
        "surprisal check: a character 4-gram over pydoc's lines, too large to enumerate",
        [
            "compare",
            "--model",
            "pydoc",
            "--decoders",
            DECODERS,
            "--n",
            "1000",
            "--max-new-tokens",
            "32",
            "--no-exact",
            "--report",
            str(pydoc_dir),
        ],
    )
    step(
        "the referee: each engine's own sampler against the exact distribution (ties at the cutoff included)",
        [
            "conformance",
            "--engines",
            "faithful,hf,torch-naive",
            "--settings",
            "top-k:5,top-p:0.5,min-p:0.1",
            "--vocab",
            "50",
            "--n",
            "500",
            "--reps",
            "499",
        ],
        expect=3,  # HF and torch-naive drop tokens tied at the top-p cutoff: failed cells, exit 3
    )
    step(
        "exact speculative decoding: a bigram drafts for a 4-gram, checked against the 4-gram's exact distribution",
        [
            "speculative",
            "--target",
            "pydoc-words:4",
            "--draft",
            "pydoc-words:2",
            "--n",
            "2000",
            "--max-new-tokens",
            "5",
        ],
    )
    print(f"\nfaithful demo done in {time.perf_counter() - started:.0f} s; open the reports:")
    print(f"  {(exact_dir / 'index.html').resolve()}")
    print(f"  {(pydoc_dir / 'index.html').resolve()}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: python scripts/faithful_demo.py OUTDIR")
    run(Path(sys.argv[1]))
