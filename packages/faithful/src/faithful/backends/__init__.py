"""Array backends: numpy (the reference) and torch (imported lazily).

Both backends run the same float64 reference arithmetic and the same keyed
uniforms (:mod:`faithful.rng`), so they return the same tokens. The torch
backend accepts tensors on any device (CPU or CUDA): CPU tensors are read in
place, others copied to the host once, and the numpy kernels
(:mod:`faithful.backends.numpy_fast`) run on them; results come back as numpy
arrays, the type :class:`faithful.samplers.SampleResult` promises.

Example:
    >>> to_numpy_logits([[0.0, 1.0]], "numpy").shape
    (1, 2)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from faithful.errors import SamplingParameterError

__all__ = ["BACKENDS", "is_torch_tensor", "to_numpy_logits"]

BACKENDS = ("numpy", "torch")


def is_torch_tensor(x: Any) -> bool:
    """True for a ``torch.Tensor`` without importing torch when it was never imported."""
    return type(x).__module__.startswith("torch") and hasattr(x, "detach")


def to_numpy_logits(logits: Any, backend: str) -> np.ndarray:
    """Logits as a numpy array (same dtype, no copy where possible); faithful never writes to it.

    Parameters:
        logits: numpy array, nested sequence, or (torch backend) a torch tensor on any device.
        backend: ``"numpy"`` or ``"torch"``.

    Returns:
        ``np.ndarray``; validation and the float64 cast happen in :func:`faithful.processors.check_logits`.

    Raises:
        SamplingParameterError: unknown backend, or a torch tensor given to the numpy backend
            on a non-CPU device.
    """
    if backend not in BACKENDS:
        raise SamplingParameterError(f"`backend` must be one of {list(BACKENDS)}, got {backend!r}")
    if is_torch_tensor(logits):
        if backend == "numpy" and str(logits.device) != "cpu":
            raise SamplingParameterError(
                f"the numpy backend got a tensor on {logits.device}; use make_sampler(backend='torch')"
            )
        from faithful.backends.torch_backend import tensor_to_numpy

        return tensor_to_numpy(logits)
    return np.asarray(logits)
