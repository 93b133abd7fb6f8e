"""The torch backend: tensors in, the reference float64 arithmetic, same tokens as numpy.

torch is imported only when this module is. Tensors on any device are moved
to host float64 once; the uniforms are the numpy keyed uniforms (so a row's
token is identical on numpy, torch CPU and torch CUDA).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["tensor_to_numpy", "uniforms_tensor"]


def tensor_to_numpy(t: Any) -> np.ndarray:
    """A float64 host copy of tensor ``t`` (``t`` itself is not modified).

    Example:
        >>> import torch
        >>> tensor_to_numpy(torch.zeros(1, 2)).dtype.name
        'float64'
    """
    import torch

    if t.dtype.is_complex or t.dtype == torch.bool:
        return np.asarray(t.detach().cpu().numpy())
    return np.asarray(t.detach().to(device="cpu", dtype=torch.float64).numpy()).copy()


def uniforms_tensor(u: np.ndarray, device: Any = "cpu") -> Any:
    """The keyed uniforms as a float64 tensor on ``device`` (bit-identical to the numpy ones)."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(u)).to(device)
