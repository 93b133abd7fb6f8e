"""Torch tensors in, numpy out: the host side of the torch path.

A sampler built with ``backend="torch"`` samples a torch tensor on its own device with
torch ops (:mod:`faithful.torch_backend`: no host copy, tensors back). The helpers here
serve the host paths: the numpy backend reads a CPU tensor in place
(:func:`to_numpy_logits`), and the decoders and :mod:`faithful.hf` read token ids and masks
to the host (:func:`tensor_to_numpy`). torch is imported only when a tensor is actually
handed in. The keyed uniforms on a device are :mod:`faithful.torch_rng`'s, bit-identical
to the numpy ones.

Example:
    >>> to_numpy_logits([[0.0, 1.0]], "numpy").shape
    (1, 2)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from faithful.errors import SamplingParameterError

__all__ = ["BACKENDS", "is_torch_tensor", "tensor_to_numpy", "to_numpy_logits", "uniforms_tensor"]

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
        return tensor_to_numpy(logits)
    return np.asarray(logits)


def tensor_to_numpy(t: Any) -> np.ndarray:
    """A host numpy view or copy of tensor ``t``; faithful never writes to it.

    float32 / float64 CPU tensors are shared without a copy (every faithful
    processor returns new arrays); other devices are copied to the host once;
    half-precision types become float32 (numpy has no bfloat16).

    Example:
        >>> import torch
        >>> tensor_to_numpy(torch.zeros(1, 2)).dtype.name
        'float32'
    """
    import torch

    t = t.detach()
    if t.dtype in (torch.float16, torch.bfloat16):
        t = t.to(torch.float32)
    if t.device.type != "cpu":
        t = t.cpu()
    if t.dtype.is_complex or t.dtype == torch.bool:
        return np.asarray(t.numpy())
    array: np.ndarray = t.resolve_conj().resolve_neg().numpy()
    return array


def uniforms_tensor(u: np.ndarray, device: Any = "cpu") -> Any:
    """Host uniforms ``u`` copied to ``device`` as a float64 tensor (bit-identical to the numpy ones).

    To compute them on the device instead, use :func:`faithful.torch_rng.device_uniforms`.
    """
    import torch

    return torch.from_numpy(np.ascontiguousarray(u)).to(device)
