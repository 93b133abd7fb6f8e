"""Sequence decoders over any :class:`~faithful.models.base.LanguageModel`.

- :func:`greedy_argmax`: the argmax baseline (prediction, not sampling).
- :func:`ancestral_sample`: proper sampling, one token at a time, with any token sampler.
- :func:`beam_search` / :func:`diverse_beam_search`: n-best search with length normalisation.
- :func:`stochastic_beam_search`: ``k`` samples without replacement, with :func:`sbs_estimate`.
- :func:`mbr_decode`: minimum-Bayes-risk selection over samples.
- :func:`generate_text`: text in, text out, from decoder/sampler specs.

Every decoder returns a :class:`DecodeResult`: sequences, their exact model
log-probabilities and, on request, the per-step distributions drawn from.
"""

from __future__ import annotations

from faithful.decode._common import (
    PAD,
    BeamWidthError,
    DecodeError,
    DecodeResult,
    InvalidLengthError,
    TokenSampler,
)
from faithful.decode.beam import beam_search, diverse_beam_search
from faithful.decode.generate import Generation, generate_text, parse_decoder_spec
from faithful.decode.mbr import exact_match, mbr_decode, mbr_select, negative_edit_distance, unigram_f1
from faithful.decode.sampling import ancestral_sample, greedy_argmax
from faithful.decode.scoring import score_sequences, step_distributions
from faithful.decode.stochastic_beam import sbs_estimate, stochastic_beam_search

__all__ = [
    "PAD",
    "BeamWidthError",
    "DecodeError",
    "DecodeResult",
    "Generation",
    "InvalidLengthError",
    "TokenSampler",
    "ancestral_sample",
    "beam_search",
    "diverse_beam_search",
    "exact_match",
    "generate_text",
    "greedy_argmax",
    "mbr_decode",
    "mbr_select",
    "negative_edit_distance",
    "parse_decoder_spec",
    "sbs_estimate",
    "score_sequences",
    "step_distributions",
    "stochastic_beam_search",
    "unigram_f1",
]
