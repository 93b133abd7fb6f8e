"""Measure fidelity: does a decoder reproduce the model's distribution?

A model can approximate a distribution very well while its decoded outputs do
not reflect it: 20 greedy tosses of a ``[0.55, 0.45]`` coin are 20 heads. This
package turns "look at the real outputs" into measurements:

* :func:`enumerate_sequences`: the exact distribution of a small model's outputs
  (n-gram, HMM, small-vocabulary neural models) up to a length bound, pruning
  prefixes below a threshold and reporting the mass covered.
* :func:`compare_exact`: N decoded outputs against that distribution: total
  variation, KL both ways, chi-square and G-test, lengths, n-gram divergence,
  distinct-n, repetition.
* :func:`compare_to_reference` and :func:`surprisal_check`: for models too large
  to enumerate, the per-step surprisal check and the same statistics against
  exact samples or a corpus.
* :func:`coin_experiment`: the essay's coin, with the exact binomial probability
  of what came out.
* :func:`write_report`: an HTML report with PNG charts (needs ``faithful[report]``).

In a test suite::

    dist = enumerate_sequences(model, max_length=8)
    outputs = my_decoder(model, n=5000, max_new_tokens=8, seed=0)
    assert compare_exact(outputs, dist).consistent
"""

from __future__ import annotations

from faithful.fidelity.coin import CoinResult, coin_experiment
from faithful.fidelity.compare import Fidelity, compare_exact, compare_to_reference
from faithful.fidelity.diversity import (
    distinct_n,
    ngram_divergence,
    ngram_frequencies,
    repetition_rate,
    sequence_duplicate_rate,
    strip_eos,
)
from faithful.fidelity.exact import (
    NotEnumerableError,
    SequenceDistribution,
    enumerate_sequences,
    normalize_output,
)
from faithful.fidelity.stats import (
    GoodnessOfFit,
    binomial_pmf,
    binomial_test,
    chi2_sf,
    goodness_of_fit,
    jensen_shannon,
    kl_divergence,
    multinomial_pmf,
    multinomial_test,
    total_variation,
)
from faithful.fidelity.surprisal import (
    ScoredOutputs,
    SurprisalCheck,
    implied_length_distribution,
    score_outputs,
    surprisal_check,
)

__all__ = [
    "CoinResult",
    "Fidelity",
    "GoodnessOfFit",
    "NotEnumerableError",
    "ScoredOutputs",
    "SequenceDistribution",
    "SurprisalCheck",
    "binomial_pmf",
    "binomial_test",
    "chi2_sf",
    "coin_experiment",
    "compare_exact",
    "compare_to_reference",
    "distinct_n",
    "enumerate_sequences",
    "goodness_of_fit",
    "implied_length_distribution",
    "jensen_shannon",
    "kl_divergence",
    "multinomial_pmf",
    "multinomial_test",
    "ngram_divergence",
    "ngram_frequencies",
    "normalize_output",
    "repetition_rate",
    "score_outputs",
    "sequence_duplicate_rate",
    "strip_eos",
    "surprisal_check",
    "total_variation",
]
