"""Chain models: one semiring dynamic program over HMMs and linear-chain score tensors.

Build a :class:`LinearChain` (or :func:`hmm_chain` from HMM parameters and
observations), then: :func:`viterbi` (best path), :func:`log_partition`
(forward algorithm), :func:`posterior_marginals` (forward-backward),
:func:`sample_paths` (FFBS: exact posterior samples) and :func:`kbest_paths`.
All in log space, batched, with ragged lengths.
"""

from __future__ import annotations

from faithful.chains.chain import ChainError, LinearChain, hmm_chain, path_score
from faithful.chains.dp import (
    PathsResult,
    forward_scores,
    kbest_paths,
    log_partition,
    posterior_marginals,
    sample_paths,
    viterbi,
)

__all__ = [
    "ChainError",
    "LinearChain",
    "PathsResult",
    "forward_scores",
    "hmm_chain",
    "kbest_paths",
    "log_partition",
    "path_score",
    "posterior_marginals",
    "sample_paths",
    "viterbi",
]
