"""Engine adapters for the conformance matrix: one small module per engine.

An adapter runs the engine's *own* processor chain and sampler on logits it is given and
reports what it did; it never reimplements the engine with faithful's code. Each adapter:

- ``name``: the engine's name on the command line; ``order``: its processor order, as documented.
- ``unavailable()``: None when usable here, else why not ("vllm is not installed"); a missing
  engine is reported as such in the matrix, never replaced by something else.
- ``unsupported(keywords)``: None, or why the engine has no such setting (the cell is "n/a").
- ``distribution(logits, keywords, history=None)``: float64 ``(B, V)``, the q its processors give
  (what its sampler should draw from), computed in the engine's own dtype and normalised in float64.
- ``sample(logits, keywords, n, seed, history=None)``: int64 ``(B, V)`` counts of ``n`` draws per
  row from the engine's own sampler.

``history`` (int64 ``(B, L)``: each row's tokens so far) is passed only for settings that read it
(penalties, DRY, no-repeat-ngram); an engine without such a processor says so in ``unsupported``.

``keywords`` are :func:`faithful.samplers.make_sampler` keywords (temperature, top_k, top_p,
min_p, typical_p, epsilon, eta, ...), read from the setting's faithful spec.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np

from faithful.errors import FaithfulError

__all__ = ["ENGINE_NAMES", "Engine", "UnknownEngineError", "get_engine"]


class UnknownEngineError(FaithfulError):
    """An engine name the referee has no adapter for."""


class Engine(Protocol):
    name: str
    order: tuple[str, ...]

    def unavailable(self) -> str | None: ...

    def unsupported(self, keywords: Mapping[str, Any]) -> str | None: ...

    def distribution(
        self, logits: np.ndarray, keywords: Mapping[str, Any], history: np.ndarray | None = None
    ) -> np.ndarray: ...

    def sample(
        self,
        logits: np.ndarray,
        keywords: Mapping[str, Any],
        n: int,
        seed: int,
        history: np.ndarray | None = None,
    ) -> np.ndarray: ...


ENGINE_NAMES = ("faithful", "hf", "torch-naive", "vllm", "flashinfer")


def get_engine(name: str) -> Engine:
    """The adapter of an engine by name.

    Raises:
        UnknownEngineError: no adapter of that name (the message lists the known ones).
    """
    key = name.strip().lower()
    if key == "faithful":
        from faithful.referee.engines.faithful_engine import FaithfulEngine

        return FaithfulEngine()
    if key in ("hf", "transformers"):
        from faithful.referee.engines.hf import HFEngine

        return HFEngine()
    if key == "torch-naive":
        from faithful.referee.engines.torch_naive import TorchNaiveEngine

        return TorchNaiveEngine()
    if key == "vllm":
        from faithful.referee.engines.vllm import VLLMEngine

        return VLLMEngine()
    if key == "flashinfer":
        from faithful.referee.engines.flashinfer import FlashInferEngine

        return FlashInferEngine()
    raise UnknownEngineError(f"unknown engine {name!r}; expected some of {', '.join(ENGINE_NAMES)}")


def counts_from_tokens(tokens: np.ndarray, v: int) -> np.ndarray:
    """``(B, n)`` token ids -> ``(B, V)`` int64 counts."""
    out = np.zeros((tokens.shape[0], v), dtype=np.int64)
    for r in range(tokens.shape[0]):
        out[r] = np.bincount(tokens[r], minlength=v)
    return out


def normalised(p: np.ndarray) -> np.ndarray:
    """Probabilities as float64 rows summing to 1 (an engine's float32 softmax, renormalised)."""
    q = np.asarray(p, dtype=np.float64)
    q = np.where(q > 0, q, 0.0)
    out: np.ndarray = q / q.sum(axis=1, keepdims=True)
    return out


def unsupported_keywords(keywords: Mapping[str, Any], supported: tuple[str, ...], engine: str) -> str | None:
    """Why ``engine`` cannot run ``keywords`` (the first keyword outside ``supported``), or None."""
    missing = [k for k in keywords if k not in supported]
    if missing:
        return f"not supported by this engine: {engine} has no {', '.join(missing)}"
    return None
