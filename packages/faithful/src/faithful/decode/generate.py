"""Text in, text out: decoder specs such as ``"beam:4"`` and :func:`generate_text` (used by the CLI)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from faithful.decode._common import BeamWidthError, DecodeError, DecodeResult, TokenSampler
from faithful.decode.beam import beam_search, diverse_beam_search
from faithful.decode.mbr import exact_match, mbr_decode, negative_edit_distance, unigram_f1
from faithful.decode.sampling import ancestral_sample, greedy_argmax
from faithful.decode.stochastic_beam import stochastic_beam_search
from faithful.models.base import EmptyPromptError, LanguageModel, VocabMismatchError
from faithful.samplers import parse_sampler_spec

__all__ = ["DECODERS", "Decoder", "Generation", "Tokenizer", "generate_text", "parse_decoder_spec"]


class Tokenizer(Protocol):
    """Text <-> token ids (``faithful.models.Vocab`` and the Hugging Face adapter's tokenizer wrapper)."""

    @property
    def vocab_size(self) -> int: ...

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Sequence[int]) -> str: ...


Decoder = Callable[[LanguageModel, Sequence[Sequence[int]], int, "TokenSampler | None", Any], DecodeResult]
"""``decoder(model, prompts, max_new_tokens, sampler, rng) -> DecodeResult``."""

DECODERS = ("greedy", "sample", "beam", "diverse-beam", "stochastic-beam", "mbr")
_UTILITIES = {"f1": unigram_f1, "exact": exact_match, "edit": negative_edit_distance}


def _options(parts: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for p in parts:
        if "=" not in p:
            raise DecodeError(f"decoder option {p!r} must look like key=value, e.g. length_penalty=0.6")
        k, v = p.split("=", 1)
        out[k.strip().replace("-", "_")] = v.strip()
    return out


def _early(v: str) -> bool | str:
    low = v.lower()
    if low in ("true", "1", "yes"):
        return True
    if low in ("false", "0", "no"):
        return False
    if low == "never":
        return "never"
    raise DecodeError(f"early_stopping must be true, false or never, got {v!r}")


def parse_decoder_spec(spec: str) -> Decoder:
    """Parse ``name[:width][,key=value...]`` into a decoder.

    Names: ``greedy``, ``sample[:N]``, ``beam:K[,length_penalty=1.0,early_stopping=false|true|never]``,
    ``diverse-beam:K[,groups=2,penalty=0.5]``, ``stochastic-beam:K``, ``mbr:N[,utility=f1|exact|edit]``.

    Returns:
        ``decoder(model, prompts, max_new_tokens, sampler, rng) -> DecodeResult``.

    Raises:
        DecodeError: on an unknown name or malformed option; BeamWidthError (a DecodeError) on a
            width that is not a whole number >= 1 (``beam:0`` is an error, not the default).

    Example::

        >>> from faithful.models import NGramModel
        >>> m = NGramModel.from_text("abc\\n", n=3)
        >>> parse_decoder_spec("beam:2")(m, [[]], 5, None, 0).best() == [m.vocab.encode("abc") + [0]]
        True
    """
    head, *rest = [s.strip() for s in spec.split(",")]
    name, colon, width_s = head.partition(":")
    name = name.strip().lower()
    opts = _options(rest)
    # a width given is used as given: 0, negative or not a whole number is an error, never a default
    try:
        width = int(width_s) if colon else None
    except ValueError:
        width = 0
    if width is not None and width < 1:
        raise BeamWidthError(
            f"the width in decoder spec {spec!r} must be a whole number >= 1, got "
            f"{width_s.strip()!r}; e.g. beam:4, sample:8 or mbr:16"
        )

    def pop_float(key: str, default: float) -> float:
        try:
            return float(opts.pop(key, default))
        except ValueError:
            raise DecodeError(f"decoder option {key} must be a number in {spec!r}") from None

    def pop_int(key: str, default: int) -> int:
        text = opts.pop(key, str(default))
        try:
            return int(text)
        except ValueError:  # never int(float(...)): groups=1.5 is an error, not 1
            raise DecodeError(
                f"decoder option {key} must be a whole number in {spec!r}, got {text!r}"
            ) from None

    decoder: Decoder
    if name in ("greedy", "argmax"):
        if width is not None:
            raise DecodeError(
                f"greedy takes no width, got {spec!r}; for several outputs use sample:N or beam:K"
            )

        def decoder(
            m: LanguageModel, p: Sequence[Sequence[int]], n: int, s: TokenSampler | None, r: Any
        ) -> DecodeResult:
            return greedy_argmax(m, p, n)

    elif name in ("sample", "ancestral"):
        k = 1 if width is None else width

        def decoder(
            m: LanguageModel, p: Sequence[Sequence[int]], n: int, s: TokenSampler | None, r: Any
        ) -> DecodeResult:
            return ancestral_sample(m, p, n, sampler=s, num_samples=k, rng=r)

    elif name == "beam":
        kb, lp, es = (
            4 if width is None else width,
            pop_float("length_penalty", 1.0),
            _early(opts.pop("early_stopping", "false")),
        )

        def decoder(
            m: LanguageModel, p: Sequence[Sequence[int]], n: int, s: TokenSampler | None, r: Any
        ) -> DecodeResult:
            return beam_search(m, p, n, num_beams=kb, length_penalty=lp, early_stopping=es)  # type: ignore[arg-type]

    elif name in ("diverse-beam", "diverse_beam"):
        kd, groups = 4 if width is None else width, pop_int("groups", 2)
        pen, lpd = pop_float("penalty", 0.5), pop_float("length_penalty", 1.0)

        def decoder(
            m: LanguageModel, p: Sequence[Sequence[int]], n: int, s: TokenSampler | None, r: Any
        ) -> DecodeResult:
            return diverse_beam_search(
                m, p, n, num_beams=kd, num_groups=groups, diversity_penalty=pen, length_penalty=lpd
            )

    elif name in ("stochastic-beam", "stochastic_beam", "sbs"):
        ks = 4 if width is None else width

        def decoder(
            m: LanguageModel, p: Sequence[Sequence[int]], n: int, s: TokenSampler | None, r: Any
        ) -> DecodeResult:
            return stochastic_beam_search(m, p, n, k=ks, sampler=s, rng=r)

    elif name == "mbr":
        km, util_name = 16 if width is None else width, opts.pop("utility", "f1")
        if util_name not in _UTILITIES:
            raise DecodeError(f"mbr utility must be one of {sorted(_UTILITIES)}, got {util_name!r}")
        util = _UTILITIES[util_name]

        def decoder(
            m: LanguageModel, p: Sequence[Sequence[int]], n: int, s: TokenSampler | None, r: Any
        ) -> DecodeResult:
            return mbr_decode(m, p, n, num_samples=km, utility=util, sampler=s, rng=r)

    else:
        raise DecodeError(f"unknown decoder {name!r}; expected one of {', '.join(DECODERS)} (e.g. beam:4)")
    if opts:
        raise DecodeError(f"unknown option(s) {sorted(opts)} for decoder {name!r}")
    return decoder


def resolve_sampler(sampler: str | TokenSampler | None) -> TokenSampler | None:
    """Turn a sampler spec (``"top-p:0.9"``, via ``faithful.samplers.parse_sampler_spec``) into a sampler."""
    if sampler is None or not isinstance(sampler, str):
        return sampler
    parsed: TokenSampler = parse_sampler_spec(sampler)
    return parsed


def find_tokenizer(model: LanguageModel, tokenizer: Tokenizer | None = None) -> Tokenizer:
    """The tokenizer to use with ``model``: the one given, else ``model.tokenizer`` or ``model.vocab``.

    Raises:
        VocabMismatchError: when none is found, or it has more ids than the model.
    """
    tok = tokenizer or getattr(model, "tokenizer", None) or getattr(model, "vocab", None)
    if tok is None:
        raise VocabMismatchError(
            "this model has no tokenizer, so text can't be encoded or decoded: save one beside a Hugging Face "
            "model (tokenizer.save_pretrained(DIR)), or in Python pass tokenizer= (anything with encode/decode)"
        )
    size = getattr(tok, "vocab_size", None)
    if size is None and hasattr(tok, "__len__"):
        size = len(tok)  # type: ignore[arg-type]
    if size is not None and int(size) > model.vocab_size:
        raise VocabMismatchError(
            f"the tokenizer has {size} ids but the model only {model.vocab_size}; "
            "use the tokenizer the model was trained with"
        )
    found: Tokenizer = tok
    return found


@dataclass(frozen=True)
class Generation:
    """Decoded text for one prompt.

    Attributes:
        texts: the ``K`` continuations as text, best first.
        result: the full :class:`DecodeResult` (token ids, log-probabilities, scores).
    """

    texts: list[str]
    result: DecodeResult


def generate_text(
    model: LanguageModel,
    prompt: str,
    *,
    decoder: str | Decoder = "sample",
    sampler: str | TokenSampler | None = None,
    max_new_tokens: int = 64,
    rng: Any = None,
    tokenizer: Tokenizer | None = None,
) -> Generation:
    """Continue ``prompt`` with ``model``: encode, decode with the chosen decoder, and detokenise.

    Args:
        model: any :class:`~faithful.models.base.LanguageModel` with a tokenizer (``model.tokenizer``
            or ``model.vocab``), or pass ``tokenizer``.
        prompt: the text to continue (may be empty when the model allows it).
        decoder: a spec for :func:`parse_decoder_spec` (``"greedy"``, ``"sample"``, ``"beam:4"``, ...)
            or a decoder function.
        sampler: a sampler spec (``"top-p:0.9"``) or sampler, for the sampling decoders.
        max_new_tokens: the longest continuation (>= 1).
        rng: int seed, keyed generator, or None.
        tokenizer: overrides the model's tokenizer.

    Returns:
        A :class:`Generation`.

    Raises:
        DecodeError: on a bad decoder spec; EmptyPromptError, VocabMismatchError, InvalidLengthError, ...

    Example::

        >>> from faithful.models import NGramModel
        >>> m = NGramModel.from_text("hello world\\n", n=4)
        >>> generate_text(m, "hel", decoder="greedy", max_new_tokens=20).texts
        ['lo world']
    """
    tok = find_tokenizer(model, tokenizer)
    ids = tok.encode(prompt)
    if not isinstance(prompt, str):
        raise EmptyPromptError(f"prompt must be a str, got {type(prompt).__name__}")
    run = parse_decoder_spec(decoder) if isinstance(decoder, str) else decoder
    result = run(model, [ids], max_new_tokens, resolve_sampler(sampler), rng)
    texts = [tok.decode(_strip_eos(s, model.eos_token_id)) for s in result.sequences()[0]]
    return Generation(texts=texts, result=result)


def _strip_eos(seq: list[int], eos: int | None) -> list[int]:
    return seq[:-1] if seq and eos is not None and seq[-1] == eos else seq
