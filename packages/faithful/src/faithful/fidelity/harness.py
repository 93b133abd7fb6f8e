"""Run several decoders on one model and measure each one's fidelity: the library behind ``faithful compare``."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from faithful.errors import FaithfulError
from faithful.fidelity.compare import Fidelity, compare_exact, compare_to_reference
from faithful.fidelity.exact import NotEnumerableError, SequenceDistribution, enumerate_sequences
from faithful.fidelity.specs import DecoderChoice, decode_outputs, parse_decoder_list
from faithful.models.base import LanguageModel

__all__ = ["Comparison", "compare_decoders"]

Key = tuple[int, ...]

# the reference set of exact samples must not share random numbers with the "sample" decoder
_REFERENCE_SEED_OFFSET = 1_000_003


@dataclass(frozen=True)
class Comparison:
    """The fidelity of several decoders on one model.

    Attributes:
        model: a description of the model.
        mode: ``"exact"`` (enumerated) or ``"reference"`` (surprisal check + exact samples).
        n: outputs per decoder. ``max_new_tokens``, ``seed``, ``prompt``: as run.
        results: decoder label -> :class:`Fidelity`, in the order given.
        outputs: decoder label -> its outputs (token ids).
        examples: decoder label -> up to 5 distinct outputs as text (when the model has a tokenizer).
        seconds: decoder label -> decoding time.
        covered_mass: mass the enumeration covered (exact mode), else None.
        note: why the mode was chosen.
    """

    model: str
    mode: str
    n: int
    max_new_tokens: int
    seed: int | None
    prompt: Key
    results: dict[str, Fidelity]
    outputs: dict[str, list[Key]] = field(repr=False)
    examples: dict[str, list[str]]
    seconds: dict[str, float]
    covered_mass: float | None
    note: str

    def table(self) -> list[dict[str, Any]]:
        """One row per decoder: the headline numbers (TV or surprisal gap, distinct-2, mean lengths)."""
        rows = []
        for label, f in self.results.items():
            h = f.headline
            rows.append(
                {
                    "decoder": label,
                    "tv": h.get("tv"),
                    "tv_null_q95": h.get("tv_null_q95"),
                    "surprisal_gap": h.get("surprisal_gap"),
                    "gap_ci": None if f.surprisal is None else [f.surprisal.ci_low, f.surprisal.ci_high],
                    "distinct_2": h["distinct_2"],
                    "model_distinct_2": h["model_distinct_2"],
                    "mean_length": h["mean_length"],
                    "model_mean_length": h["model_mean_length"],
                    "consistent": f.consistent,
                }
            )
        return rows

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (without the raw outputs)."""
        from faithful.fidelity.compare import _jsonable

        out: dict[str, Any] = _jsonable(
            {
                "model": self.model,
                "mode": self.mode,
                "n": self.n,
                "max_new_tokens": self.max_new_tokens,
                "seed": self.seed,
                "prompt": list(self.prompt),
                "covered_mass": self.covered_mass,
                "note": self.note,
                "table": self.table(),
                "decoders": {k: v.to_dict() for k, v in self.results.items()},
                "examples": self.examples,
                "seconds": self.seconds,
            }
        )
        return out


def _decode_text(model: LanguageModel) -> Callable[[Sequence[int]], str] | None:
    tok = getattr(model, "tokenizer", None) or getattr(model, "vocab", None)
    if tok is None or not hasattr(tok, "decode"):
        return None
    eos = model.eos_token_id

    def decode(ids: Sequence[int]) -> str:
        body = [int(t) for t in ids if eos is None or int(t) != eos]
        return str(tok.decode(body))

    return decode


def compare_decoders(
    model: LanguageModel,
    decoders: str | Sequence[DecoderChoice],
    *,
    n: int = 1000,
    max_new_tokens: int = 32,
    prompt: Sequence[int] = (),
    seed: int | None = 0,
    exact: bool | None = None,
    threshold: float = 1e-6,
    max_prefixes: int = 200_000,
    min_coverage: float = 0.95,
    model_name: str = "model",
    progress: Callable[[str], None] | None = None,
    decode: Callable[..., list[Key]] | None = None,
) -> Comparison:
    """Decode ``n`` outputs with each decoder and measure how faithfully each reproduces the model.

    Parameters:
        model: a :class:`~faithful.models.LanguageModel`.
        decoders: a spec list (``"greedy,sample,top-p:0.9,beam:4"``) or parsed choices.
        n: outputs per decoder (>= 1; the statistics want hundreds or more).
        max_new_tokens: the length bound of every decoder (EOS included).
        prompt: token ids every output continues.
        seed: seed of the decoders' keyed randomness (and of the baselines).
        exact: True: require exact metrics (enumeration); False: surprisal check against exact
            samples; None: exact when the model enumerates with ``covered_mass >= min_coverage``.
        threshold, max_prefixes: pruning of :func:`~faithful.fidelity.enumerate_sequences`.
        min_coverage: the least covered mass for exact metrics.
        model_name: how the model is described in the result.
        progress: called with a short message before each step (the CLI prints it on stderr).
        decode: decodes the outputs, with :func:`~faithful.fidelity.specs.decode_outputs`'s
            signature (default: that function); :meth:`faithful.fidelity.parallel.Runner.decode_outputs`
            spreads them over processes or a Ray cluster with the same results.

    Returns: a :class:`Comparison`.

    Raises:
        FaithfulError: when ``n < 1`` or ``max_new_tokens < 1``, or a decoder spec is bad.
        NotEnumerableError: when ``exact=True`` and the model cannot be enumerated to
            ``min_coverage``.
    """
    if n < 1:
        raise FaithfulError(f"`n` (outputs per decoder) must be >= 1, got {n}")
    if max_new_tokens < 1:
        raise FaithfulError(f"`max_new_tokens` must be >= 1, got {max_new_tokens}")
    choices = parse_decoder_list(decoders) if isinstance(decoders, str) else list(decoders)
    say = progress or (lambda _msg: None)
    run = decode or decode_outputs
    dist: SequenceDistribution | None = None
    note = ""
    if exact is not False:
        say("enumerating the model's sequence distribution")
        try:
            dist = enumerate_sequences(
                model, max_new_tokens, prompt=prompt, threshold=threshold, max_prefixes=max_prefixes
            )
        except NotEnumerableError as exc:
            if exact:
                raise NotEnumerableError(
                    f"exact metrics need an enumerable model: {exc}. Run without --exact for the surprisal check"
                ) from None
            note = f"not enumerable ({exc}); using the surprisal check and exact samples"
        if dist is not None and dist.covered_mass < min_coverage:
            msg = (
                f"enumeration at threshold {threshold:g} covered only {dist.covered_mass:.3f} of the mass "
                f"(need {min_coverage})"
            )
            if exact:
                raise NotEnumerableError(
                    f"{msg}; exact metrics need more: lower --threshold, shorten --max-new-tokens, "
                    "or run without --exact for the surprisal check"
                )
            note = f"{msg}; using the surprisal check and exact samples"
            dist = None
        elif dist is not None:
            note = (
                f"exact: {len(dist.probs)} outputs enumerated, covering {dist.covered_mass:.4f} of the mass"
            )
    else:
        note = "surprisal check and exact samples (exact metrics not requested)"
    reference: list[Key] = []
    if dist is None:
        say(f"drawing {n} exact samples as the reference")
        ref_seed = None if seed is None else seed + _REFERENCE_SEED_OFFSET
        reference = run(
            model, DecoderChoice("reference", "sample", None), n, max_new_tokens, prompt=prompt, seed=ref_seed
        )
    to_text = _decode_text(model)
    results: dict[str, Fidelity] = {}
    outputs: dict[str, list[Key]] = {}
    examples: dict[str, list[str]] = {}
    seconds: dict[str, float] = {}
    for choice in choices:
        say(f"decoding {n} outputs with {choice.label}")
        t0 = time.perf_counter()
        outs = run(model, choice, n, max_new_tokens, prompt=prompt, seed=seed)
        seconds[choice.label] = time.perf_counter() - t0
        say(f"measuring {choice.label}")
        if dist is not None:
            fid = compare_exact(outs, dist, model=model, seed=seed or 0)
        else:
            fid = compare_to_reference(
                outs,
                reference,
                model=model,
                max_length=max_new_tokens,
                prompt=prompt,
                reference_is_exact=True,
            )
        results[choice.label] = fid
        outputs[choice.label] = outs
        if to_text is not None:
            seen: list[Key] = []
            for o in outs:
                if o not in seen:
                    seen.append(o)
                if len(seen) == 5:
                    break
            examples[choice.label] = [to_text(o) for o in seen]
    return Comparison(
        model=model_name,
        mode="exact" if dist is not None else "reference",
        n=n,
        max_new_tokens=max_new_tokens,
        seed=seed,
        prompt=tuple(int(t) for t in prompt),
        results=results,
        outputs=outputs,
        examples=examples,
        seconds=seconds,
        covered_mass=None if dist is None else dist.covered_mass,
        note=note,
    )
