"""Sampler settings as the referee reads them: a faithful spec or Hugging Face style keys.

Both become the same thing: a faithful :class:`~faithful.samplers.Sampler` (the canonical
definition) and the keywords of :func:`~faithful.samplers.make_sampler` it was built from,
which the engine adapters translate into their own processor chains.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from faithful.errors import SamplingParameterError
from faithful.processors.table import entry_for
from faithful.samplers import Sampler, greedy, make_sampler, parse_sampler_spec

__all__ = ["HF_KEYS", "keywords_of", "sampler_from_hf", "sampler_from_settings"]

# Hugging Face GenerationConfig key -> (faithful keyword, the value that turns it off in HF)
HF_KEYS: dict[str, tuple[str, Any]] = {
    "temperature": ("temperature", 1.0),
    "top_k": ("top_k", 0),
    "top_p": ("top_p", 1.0),
    "min_p": ("min_p", None),
    "typical_p": ("typical_p", 1.0),
    "epsilon_cutoff": ("epsilon", 0.0),
    "eta_cutoff": ("eta", 0.0),
    "repetition_penalty": ("repetition_penalty", 1.0),
    "no_repeat_ngram_size": ("no_repeat_ngram_size", 0),
}
_HF_IGNORED = {"do_sample", "max_new_tokens", "min_tokens_to_keep"}


def sampler_from_hf(settings: Mapping[str, Any]) -> Sampler:
    """A faithful sampler with Hugging Face's meaning of ``settings`` (GenerationConfig keys).

    HF's switches are honoured: ``top_k=0``, ``top_p=1.0``, ``typical_p=1.0``, ``epsilon_cutoff=0``,
    ``eta_cutoff=0``, ``repetition_penalty=1.0`` and ``temperature=1.0`` are off, and
    ``do_sample=False`` is greedy. HF applies these in faithful's default order (penalties, then
    temperature, top-k, top-p, min-p, typical, epsilon, eta: ``GenerationMixin._get_logits_processor``).

    Raises:
        SamplingParameterError: an unknown key or a bad value.

    Example:
        >>> sampler_from_hf({"temperature": 0.7, "top_p": 0.9, "top_k": 0}).name
        'temperature:0.7+top-p:0.9'
    """
    unknown = sorted(set(settings) - set(HF_KEYS) - _HF_IGNORED)
    if unknown:
        raise SamplingParameterError(
            f"unknown Hugging Face sampler key(s) {unknown}; expected some of {[*sorted(HF_KEYS), 'do_sample']}"
        )
    if settings.get("do_sample", True) is False:
        return greedy()
    kwargs: dict[str, Any] = {}
    for key, value in settings.items():
        if key in _HF_IGNORED or value is None:
            continue
        keyword, off = HF_KEYS[key]
        if off is not None and value == off:
            continue
        kwargs[keyword] = value
    return make_sampler(**kwargs)


def sampler_from_settings(spec: str | None = None, hf: Mapping[str, Any] | None = None) -> Sampler:
    """The canonical sampler of a record or a matrix column: a faithful spec or HF-style keys (one of them).

    Raises:
        SamplingParameterError: neither or both given, or a bad spec/key.
    """
    if (spec is None) == (hf is None):
        raise SamplingParameterError(
            "give the sampler settings either as a faithful spec (e.g. 'temperature:0.7+top-p:0.9') "
            "or as Hugging Face style keys (e.g. {'temperature': 0.7, 'top_p': 0.9}), exactly one of them"
        )
    if spec is not None:
        if not isinstance(spec, str):
            raise SamplingParameterError(f"a sampler spec must be a string, got {spec!r}")
        return parse_sampler_spec(spec)
    if not isinstance(hf, Mapping):
        raise SamplingParameterError(f"Hugging Face style settings must be an object of keys, got {hf!r}")
    return sampler_from_hf(hf)


def keywords_of(sampler: Sampler) -> dict[str, Any]:
    """The :func:`make_sampler` keywords a (keyword-built) sampler applies, read back from its processors.

    Temperature 1 (the identity) is absent; ``{}`` is plain sampling. Greedy and mirostat are
    refused (the referee's engines do not have them).

    Example:
        >>> keywords_of(parse_sampler_spec("temperature:0.5+top-k:3"))
        {'temperature': 0.5, 'top_k': 3}
    """
    if sampler.draw == "argmax" or sampler.mirostat is not None:
        raise SamplingParameterError(
            f"sampler {sampler.name!r} is greedy or mirostat; the referee compares truncation samplers"
        )
    out: dict[str, Any] = {}
    for proc in sampler.processors:
        entry = entry_for(type(proc))
        for p in entry.params:
            value = getattr(proc, p.field)
            if isinstance(value, float) and math.isfinite(value) and value == int(value) and p.parse is int:
                value = int(value)
            out[p.keyword] = value
    return out
