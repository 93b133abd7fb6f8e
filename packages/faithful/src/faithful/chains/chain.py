"""Linear-chain score tensors: the one input every chain algorithm takes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from faithful.errors import FaithfulError

__all__ = ["ChainError", "LinearChain", "hmm_chain", "path_score"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


class ChainError(FaithfulError, ValueError):
    """A chain's score tensors have inconsistent shapes or values."""


@dataclass(frozen=True)
class LinearChain:
    """Log-space scores of a batch of linear chains over ``S`` states.

    The score of a path ``z_0 .. z_{L-1}`` of row ``b`` is
    ``initial[b, z_0] + sum_t emissions[b, t, z_t] + sum_{t>=1} transitions(b, t)[z_{t-1}, z_t]``.
    For an HMM these are log-probabilities and the score is ``log P(z, x)``.

    Attributes:
        initial: float64 ``(B, S)``.
        emissions: float64 ``(B, T, S)`` per-position unary scores.
        transitions: float64 ``(S, S)`` shared, ``(B, S, S)`` per row, or ``(B, T-1, S, S)`` per step
            (entry ``[b, t-1]`` scores the move into position ``t``).
        lengths: int64 ``(B,)``, each in ``1..T``; positions past a row's length are ignored.

    Use :meth:`create` to build one with validation and defaults.
    """

    initial: FloatArray
    emissions: FloatArray
    transitions: FloatArray
    lengths: IntArray

    @classmethod
    def create(
        cls,
        emissions: npt.ArrayLike,
        transitions: npt.ArrayLike,
        initial: npt.ArrayLike | None = None,
        lengths: npt.ArrayLike | None = None,
    ) -> LinearChain:
        """Validate and broadcast the score tensors.

        Args:
            emissions: ``(T, S)`` or ``(B, T, S)``.
            transitions: ``(S, S)``, ``(B, S, S)`` or ``(B, T-1, S, S)``.
            initial: ``(S,)`` or ``(B, S)``; default zeros.
            lengths: ``(B,)``; default ``T`` for every row.

        Raises:
            ChainError: on inconsistent shapes, NaN/+inf scores, or lengths outside ``1..T``.

        Example::

            >>> c = LinearChain.create(np.zeros((3, 2)), np.log([[0.9, 0.1], [0.2, 0.8]]))
            >>> c.emissions.shape, c.lengths.tolist()
            ((1, 3, 2), [3])
        """
        e = np.asarray(emissions, dtype=np.float64)
        if e.ndim == 2:
            e = e[None]
        if e.ndim != 3 or e.shape[1] < 1 or e.shape[2] < 1:
            raise ChainError(f"emissions must be (T, S) or (B, T, S) with T, S >= 1, got shape {e.shape}")
        b, t, s = e.shape
        tr = np.asarray(transitions, dtype=np.float64)
        ok = tr.shape in ((s, s), (b, s, s)) or (tr.ndim == 4 and tr.shape == (b, max(t - 1, 0), s, s))
        if not ok:
            raise ChainError(
                f"transitions must be ({s}, {s}), ({b}, {s}, {s}) or ({b}, {t - 1}, {s}, {s}), got {tr.shape}"
            )
        init = np.zeros((b, s)) if initial is None else np.asarray(initial, dtype=np.float64)
        if init.ndim == 1:
            init = np.broadcast_to(init, (b, s)).copy()
        if init.shape != (b, s):
            raise ChainError(f"initial must be ({s},) or ({b}, {s}), got {init.shape}")
        if lengths is None:
            lens = np.full(b, t, dtype=np.int64)
        else:
            # read as given, then checked: an int64 cast first turned 2.5 into 2 and True into 1
            raw = np.asarray(lengths)
            whole = raw.dtype.kind in "iu" or (
                raw.dtype.kind == "f"
                and bool(np.all(np.isfinite(raw)))
                and bool(np.all(raw == np.round(raw)))
            )
            lens = raw.astype(np.int64) if whole else np.zeros(0, dtype=np.int64)
            if not whole or lens.shape != (b,) or (b and (lens.min() < 1 or lens.max() > t)):
                raise ChainError(f"lengths must be ({b},) integers in 1..{t}, got {raw.tolist()}")
        for name, arr in (("emissions", e), ("transitions", tr), ("initial", init)):
            if np.isnan(arr).any() or np.isposinf(arr).any():
                raise ChainError(f"{name} must be finite or -inf (log-space scores); found NaN or +inf")
        return cls(initial=init, emissions=e, transitions=tr, lengths=lens)

    @property
    def batch_size(self) -> int:
        """``B``."""
        return int(self.emissions.shape[0])

    @property
    def num_steps(self) -> int:
        """``T`` (the padded length)."""
        return int(self.emissions.shape[1])

    @property
    def num_states(self) -> int:
        """``S``."""
        return int(self.emissions.shape[2])

    def transition(self, t: int) -> FloatArray:
        """Scores of moves into position ``t >= 1``: ``(S, S)`` or ``(B, S, S)``."""
        if self.transitions.ndim == 4:
            out: FloatArray = self.transitions[:, t - 1]
            return out
        return self.transitions


def hmm_chain(
    startprob: npt.ArrayLike,
    transmat: npt.ArrayLike,
    emissionprob: npt.ArrayLike,
    observations: Sequence[Sequence[int]] | npt.ArrayLike,
) -> LinearChain:
    """The posterior chain of a categorical HMM given observation sequences.

    Args:
        startprob: ``(S,)``; transmat: ``(S, S)``; emissionprob: ``(S, V)`` (hmmlearn's ``CategoricalHMM`` names).
        observations: ``B`` sequences of symbol ids (ragged allowed), or a 1-D array for one sequence.

    Returns:
        A :class:`LinearChain` whose path scores are ``log P(z, x)``; its log-partition is ``log P(x)``.

    Raises:
        ChainError: on an empty sequence or a symbol outside ``0..V-1``.

    Example::

        >>> c = hmm_chain([0.5, 0.5], [[0.9, 0.1], [0.1, 0.9]], [[0.8, 0.2], [0.3, 0.7]], [[0, 1, 1]])
        >>> c.emissions.shape
        (1, 3, 2)
    """
    pi = np.asarray(startprob, dtype=np.float64)
    a = np.asarray(transmat, dtype=np.float64)
    em = np.asarray(emissionprob, dtype=np.float64)
    _check_hmm(pi, a, em)
    if isinstance(observations, np.ndarray) and observations.ndim == 1:
        seqs = [observations.tolist()]
    else:
        seqs = [list(np.asarray(o).reshape(-1).tolist()) for o in observations]  # type: ignore[union-attr]
    if not seqs or any(len(s) == 0 for s in seqs):
        raise ChainError("every observation sequence needs at least one symbol")
    for s in seqs:
        # a float symbol was cast to int64 silently (0.5 read as symbol 0)
        if any(isinstance(x, bool) or not isinstance(x, int | float) or not float(x).is_integer() for x in s):
            raise ChainError(f"observation symbols must be int ids, got {s[:8]}")
    v = em.shape[1]
    t = max(len(s) for s in seqs)
    obs = np.zeros((len(seqs), t), dtype=np.int64)
    for i, s in enumerate(seqs):
        if min(s) < 0 or max(s) >= v:
            raise ChainError(f"observation symbols must be in 0..{v - 1}, got {min(s)}..{max(s)}")
        obs[i, : len(s)] = s
    with np.errstate(divide="ignore"):
        log_em = np.log(em)
        return LinearChain.create(
            emissions=log_em[:, obs].transpose(1, 2, 0),
            transitions=np.log(a),
            initial=np.log(pi),
            lengths=[len(s) for s in seqs],
        )


def _check_hmm(pi: FloatArray, a: FloatArray, em: FloatArray) -> None:
    """hmmlearn's CategoricalHMM constraints: a chain of unnormalised numbers is no HMM, and its
    log-partition would not be ``log P(x)`` (the same rule as :class:`faithful.models.hmm.HMMModel`)."""
    s = pi.shape[0] if pi.ndim == 1 else -1
    if pi.ndim != 1 or s < 1 or a.shape != (s, s) or em.ndim != 2 or em.shape[0] != s or em.shape[1] < 1:
        raise ChainError(
            f"HMM parameters must be startprob (S,), transmat (S, S), emissionprob (S, V) with S, V >= 1, "
            f"got {pi.shape}, {a.shape}, {em.shape}"
        )
    for name, p in (("startprob", pi), ("transmat", a), ("emissionprob", em)):
        if (
            not np.all(np.isfinite(p))
            or np.any(p < 0)
            or not np.allclose(p.sum(axis=-1), 1.0, rtol=0, atol=1e-8)
        ):
            raise ChainError(
                f"{name} must hold probabilities (finite, >= 0) with each row summing to 1, "
                f"got row sums {np.round(np.atleast_1d(p.sum(axis=-1)), 6).tolist()[:8]}; normalise it first"
            )


def path_score(chain: LinearChain, paths: npt.ArrayLike) -> FloatArray:
    """Scores of given state paths.

    Args:
        chain: the chain.
        paths: int ``(B, T)`` or ``(B, N, T)`` state ids (entries past each row's length are ignored).

    Returns:
        float64 ``(B,)`` or ``(B, N)``.
    """
    z = np.asarray(paths, dtype=np.int64)
    single = z.ndim == 2
    if single:
        z = z[:, None, :]
    b = z.shape[0]
    rows = np.arange(b)[:, None]
    zc = np.where(z >= 0, z, 0)
    score = chain.initial[rows, zc[:, :, 0]] + chain.emissions[rows, 0, zc[:, :, 0]]
    for t in range(1, chain.num_steps):
        live = (chain.lengths > t)[:, None]
        tr = chain.transition(t)
        step_tr = tr[zc[:, :, t - 1], zc[:, :, t]] if tr.ndim == 2 else tr[rows, zc[:, :, t - 1], zc[:, :, t]]
        step = step_tr + chain.emissions[rows, t, zc[:, :, t]]
        score = score + np.where(live, step, 0.0)
    out: FloatArray = score[:, 0] if single else score
    return out
