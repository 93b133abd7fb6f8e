"""Model and decoder specs of the command line, as library functions.

Models (:func:`load_model`):

* ``pydoc[:N[:char|word]]``: an n-gram (default character 4-gram) trained on the text of
  Python's ``pydoc_data.topics``, one stripped non-empty line per sequence. N is at most
  :data:`MAX_NGRAM_ORDER` (24) in every n-gram spec.
* ``pydoc-words[:N]``: a character n-gram (default 3) over the lowercase words of that text, one
  word per sequence: small enough to enumerate at short length bounds, for exact metrics.
* ``ngram:PATH[:N[:char|word]]``: an n-gram trained on a text file, one line per sequence.
* ``hf:DIR`` or a directory holding a ``config.json``: a Hugging Face causal LM (needs torch
  and transformers).

Decoders (:func:`parse_decoder_list`): a comma-separated list whose items are either a decoder
of :func:`faithful.decode.parse_decoder_spec` (``greedy``, ``sample``, ``beam:4``,
``diverse-beam:4``, ``stochastic-beam:4``, ``mbr:16``; ``key=value`` items after one are its
options) or a sampler spec of :func:`faithful.samplers.parse_sampler_spec` (``top-p:0.9``,
``temperature:0.8+top-k:40``), which means ancestral sampling with that sampler. ``DECODER@SAMPLER``
gives a sampling decoder its sampler (``mbr:8@top-p:0.95``).
"""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from faithful.errors import FaithfulError
from faithful.models import LanguageModel, NGramModel

__all__ = [
    "DecoderChoice",
    "ModelSpecError",
    "check_sampler_fits",
    "decode_outputs",
    "load_model",
    "parse_decoder_list",
    "pydoc_text",
    "pydoc_words",
    "split_spec_list",
]

_DECODER_NAMES = {
    "greedy",
    "argmax",
    "sample",
    "ancestral",
    "beam",
    "diverse-beam",
    "diverse_beam",
    "stochastic-beam",
    "stochastic_beam",
    "sbs",
    "mbr",
}
_DETERMINISTIC = {"greedy", "argmax", "beam", "diverse-beam", "diverse_beam"}

Key = tuple[int, ...]


class ModelSpecError(FaithfulError):
    """A ``--model`` or ``--decoders`` spec could not be understood."""


def pydoc_text() -> str:
    """The text of Python's ``pydoc_data.topics``: stripped, non-empty lines joined by newlines."""
    topics = importlib.import_module("pydoc_data.topics").topics
    lines = (line.strip() for text in topics.values() for line in text.splitlines())
    return "\n".join(line for line in lines if line)


def pydoc_words() -> str:
    """The lowercase words (runs of ``a-z``) of :func:`pydoc_text`, one per line."""
    return "\n".join(re.findall(r"[a-z]+", pydoc_text().lower()))


MAX_NGRAM_ORDER = 24
"""The highest n-gram order a spec may ask for. Training keeps every context of every order below n
at every position, so its time and memory grow with the square of n: on pydoc's text an order of 32
took 34 s and 3.5 GB, 128 over 20 GB; and `[<bos>] * (n - 1)` of pydoc:99999999999 alone ran out of
memory. The Python API (NGramModel) takes any order."""


def _ngram_options(parts: Sequence[str], spec: str, default_n: int) -> tuple[int, str]:
    n, level = default_n, "char"
    if len(parts) > 2:
        raise ModelSpecError(
            f"too many ':' parts in model spec {spec!r}; expected e.g. ngram:corpus.txt:3:char"
        )
    if parts:
        try:
            n = int(parts[0])
        except ValueError:
            raise ModelSpecError(
                f"the n-gram order in {spec!r} must be an integer, got {parts[0]!r}"
            ) from None
        if n < 1:
            raise ModelSpecError(f"the n-gram order in {spec!r} must be >= 1, got {n}")
        if n > MAX_NGRAM_ORDER:
            raise ModelSpecError(
                f"the n-gram order in {spec!r} must be from 1 to {MAX_NGRAM_ORDER}, got {n}; a model's "
                "training time and memory grow with the square of its order (the Python API, "
                "faithful.models.NGramModel, takes higher orders)"
            )
    if len(parts) == 2:
        level = parts[1]
        if level not in ("char", "word"):
            raise ModelSpecError(
                f"the n-gram level in {spec!r} must be char or word, got {level!r}; expected e.g. ngram:corpus.txt:3:char"
            )
    return n, level


def _ngram_path_and_options(spec: str) -> tuple[Path, int, str]:
    """Split ``ngram:PATH[:N[:char|word]]``; a path may itself hold ':'.

    The options are checked before the file, so ``ngram:PATH:3:chars`` says that the level is
    wrong (expected char|word) rather than that no file ``PATH:3:chars`` exists.
    """
    parts = spec[len("ngram:") :].split(":")
    # the longest tail of at most two parts whose head is an existing file holds the options
    for k in (2, 1):
        if len(parts) > k and Path(":".join(parts[:-k])).is_file():
            n, level = _ngram_options(parts[-k:], spec, 3)
            return Path(":".join(parts[:-k])), n, level
    opts: list[str] = []
    if len(parts) > 2 and parts[-2].strip().lstrip("+-").isdigit():
        opts = parts[-2:]  # PATH:N:LEVEL
    elif len(parts) > 1 and parts[-1].strip().lstrip("+-").isdigit():
        opts = parts[-1:]  # PATH:N
    n, level = _ngram_options(opts, spec, 3)
    path = Path(":".join(parts[: len(parts) - len(opts)]))
    if not path.is_file():
        raise ModelSpecError(
            f"no text file at {str(path)!r} for model spec {spec!r}; expected ngram:PATH_TO_TEXT[:N[:char|word]]"
        )
    return path, n, level


def load_model(spec: str) -> LanguageModel:
    """Build the model a ``--model`` spec names (see the module docstring).

    Raises:
        ModelSpecError: on an unknown or malformed spec, a missing file, or a Hugging Face model
            without torch/transformers.

    Example::

        >>> m = load_model("pydoc:2")
        >>> m.vocab_size > 50
        True
    """
    if spec == "pydoc-words" or spec.startswith("pydoc-words:"):
        n, level = _ngram_options(spec.split(":")[1:], spec, 3)
        if level != "char":
            raise ModelSpecError(f"pydoc-words is a character model; drop the level from {spec!r}")
        return NGramModel.from_text(pydoc_words(), n=n, level="char")
    if spec == "pydoc" or spec.startswith("pydoc:"):
        n, level = _ngram_options(spec.split(":")[1:], spec, 4)
        return NGramModel.from_text(pydoc_text(), n=n, level=level)  # type: ignore[arg-type]
    if spec.startswith("ngram:"):
        path, n, level = _ngram_path_and_options(spec)
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise ModelSpecError(
                f"cannot read {str(path)!r} for model spec {spec!r}: {exc.strerror or exc}"
            ) from None
        if not text.strip():
            raise ModelSpecError(f"{str(path)!r} holds no text to train an n-gram on")
        return NGramModel.from_text(text, n=n, level=level)  # type: ignore[arg-type]
    hf_dir = spec[len("hf:") :] if spec.startswith("hf:") else spec
    if spec.startswith("hf:") or (Path(hf_dir) / "config.json").is_file():
        if not (Path(hf_dir) / "config.json").is_file():
            raise ModelSpecError(f"{hf_dir!r} is not a Hugging Face model directory (no config.json)")
        try:
            hf = importlib.import_module("faithful.models.hf")
        except ImportError as exc:
            raise ModelSpecError(
                f"loading a Hugging Face model needs torch and transformers ({exc}); "
                "install them with `pip install 'faithful[torch]' transformers`"
            ) from None
        # an empty prompt starts from the checkpoint's BOS token (GPT-2 style models have one)
        try:
            config = json.loads((Path(hf_dir) / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ModelSpecError(f"cannot read {hf_dir}/config.json: {exc}") from None
        bos = config.get("bos_token_id")
        model: LanguageModel = hf.load_hf_model(hf_dir, bos_token_id=bos if isinstance(bos, int) else None)
        return model
    raise ModelSpecError(
        f"unknown model spec {spec!r}; expected pydoc[:N], pydoc-words[:N], ngram:PATH_TO_TEXT[:N[:char|word]], "
        "or a Hugging Face model directory (hf:DIR)"
    )


@dataclass(frozen=True)
class DecoderChoice:
    """One decoder of a comparison: its label, the decoder spec and the sampler spec (or None)."""

    label: str
    decoder: str
    sampler: str | None

    @property
    def deterministic(self) -> bool:
        """Whether every run gives the same output (greedy, beam, diverse beam)."""
        return self.decoder.split(",")[0].split(":")[0].strip().lower() in _DETERMINISTIC


def _decoder_name(spec: str) -> str:
    return spec.split(",")[0].split(":")[0].strip().lower()


def check_sampler_fits(decoder: str, sampler: str | None) -> None:
    """Refuse a sampler given to a decoder that does not sample (greedy, beam, diverse beam).

    Such a decoder would ignore it silently, and the output would be labelled with a sampler
    that played no part.

    Raises:
        ModelSpecError: when ``sampler`` is given and ``decoder`` takes none.

    Example::

        >>> check_sampler_fits("sample", "top-p:0.9")
        >>> try:
        ...     check_sampler_fits("beam:4", "top-p:0.9")
        ... except ModelSpecError as exc:
        ...     print(str(exc)[:28])
        beam takes no sampler (it do
    """
    name = _decoder_name(decoder)
    if sampler is not None and name in _DETERMINISTIC:
        raise ModelSpecError(
            f"{name} takes no sampler (it does not sample), got {sampler!r}; drop the sampler, or use a "
            "sampling decoder with it: sample, stochastic-beam:K or mbr:N"
        )


def _is_decoder_name(item: str) -> bool:
    return item.split(",")[0].split(":")[0].strip().lower() in _DECODER_NAMES


def split_spec_list(text: str) -> list[str]:
    """Split a comma-separated list of specs, keeping the commas inside a spec's own values.

    A spec part always starts with a name (a letter), so a piece that does not is the rest of the
    value before it: ``logit-bias:3=2,7=-1``, ``allowed-tokens:1,2``, ``dry-breakers:13,25/7``
    (they were cut into pieces and refused as "unknown spec part '7=-1'").

    Example::

        >>> split_spec_list("greedy, sample+logit-bias:3=2,7=-1,top-p:0.9+forbidden-tokens:0,5")
        ['greedy', 'sample+logit-bias:3=2,7=-1', 'top-p:0.9+forbidden-tokens:0,5']
    """
    items: list[str] = []
    for raw in text.split(","):
        part = raw.strip()
        if not part:
            continue
        if items and not part[0].isalpha():
            items[-1] = f"{items[-1]},{part}"
        else:
            items.append(part)
    return items


def parse_decoder_list(spec: str) -> list[DecoderChoice]:
    """Parse ``"greedy,sample,top-p:0.9,beam:4"`` into :class:`DecoderChoice` values, validating each.

    Raises:
        ModelSpecError: on an empty list, a duplicate, or a spec neither a decoder nor a sampler;
            the message lists what is valid.

    Example::

        >>> [c.label for c in parse_decoder_list("greedy,top-p:0.9,beam:4,length_penalty=0.6")]
        ['greedy', 'top-p:0.9', 'beam:4,length_penalty=0.6']
    """
    from faithful.decode import parse_decoder_spec
    from faithful.samplers import parse_sampler_spec

    items: list[str] = []
    for part in split_spec_list(spec):
        if "=" in part and "@" not in part and items and _is_decoder_name(items[-1]):
            items[-1] = f"{items[-1]},{part}"
        else:
            items.append(part)
    if not items:
        raise ModelSpecError(
            "no decoders given; expected a comma-separated list such as greedy,sample,top-p:0.9,beam:4"
        )
    out: list[DecoderChoice] = []
    for item in items:
        dec, _, samp = item.partition("@")
        sampler: str | None = samp or None
        if _is_decoder_name(dec):
            decoder = dec
        elif not samp:
            decoder, sampler = "sample", dec
        else:
            raise ModelSpecError(
                f"{dec!r} in {item!r} is not a decoder; DECODER@SAMPLER needs a decoder name first"
            )
        try:
            parse_decoder_spec(decoder)
            if sampler is not None:
                parse_sampler_spec(sampler)
            check_sampler_fits(decoder, sampler)
        except FaithfulError as exc:
            raise ModelSpecError(
                f"bad decoder {item!r}: {exc}. Decoders: greedy, sample, beam:K, diverse-beam:K, "
                "stochastic-beam:K, mbr:N; or a sampler spec such as top-p:0.9 or temperature:0.8+top-k:40"
            ) from None
        out.append(DecoderChoice(label=item, decoder=decoder, sampler=sampler))
    labels = [c.label for c in out]
    if len(set(labels)) != len(labels):
        raise ModelSpecError(f"a decoder is listed twice in {spec!r}; list each once")
    return out


def decode_outputs(
    model: LanguageModel,
    choice: DecoderChoice,
    n: int,
    max_new_tokens: int,
    *,
    prompt: Sequence[int] = (),
    seed: int | None = 0,
) -> list[Key]:
    """Run a decoder ``n`` times on ``prompt`` and return its ``n`` outputs (EOS included when it ended).

    A run's output is the decoder's best candidate. Deterministic decoders (greedy, beam, diverse
    beam) give the same output every run, so they run once and the output is repeated; the
    others run as one batch of ``n`` rows whose keyed randomness makes the runs independent.

    Raises: FaithfulError when ``n < 1`` or from the decoder.
    """
    from faithful.decode import parse_decoder_spec
    from faithful.decode.generate import resolve_sampler

    if n < 1:
        raise FaithfulError(f"the number of outputs must be >= 1, got {n}")
    run = parse_decoder_spec(choice.decoder)
    sampler: Any = resolve_sampler(choice.sampler)
    if choice.deterministic:
        best = run(model, [list(prompt)], max_new_tokens, sampler, seed).best()[0]
        return [tuple(int(t) for t in best)] * n
    result = run(model, [list(prompt)] * n, max_new_tokens, sampler, seed)
    return [tuple(int(t) for t in row) for row in result.best()]
