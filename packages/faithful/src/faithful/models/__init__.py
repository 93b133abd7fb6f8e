"""Models behind one protocol: batched next-token log-probabilities from a state.

Adapters: :class:`CallableModel` (any function), :class:`NGramModel` (trained
from text, character or word level), :class:`HMMModel` (a hidden Markov model
over observation symbols) and, with torch installed, the Hugging Face causal LM
adapter in :mod:`faithful.models.hf` (imported lazily; ``load_hf_model``).
"""

from __future__ import annotations

from faithful.models.base import (
    EmptyPromptError,
    LanguageModel,
    ModelError,
    VocabMismatchError,
    log_normalize,
)
from faithful.models.callable import CallableModel
from faithful.models.hmm import HMMModel
from faithful.models.ngram import NGramModel, Vocab

__all__ = [
    "CallableModel",
    "EmptyPromptError",
    "HMMModel",
    "LanguageModel",
    "ModelError",
    "NGramModel",
    "Vocab",
    "VocabMismatchError",
    "log_normalize",
]
