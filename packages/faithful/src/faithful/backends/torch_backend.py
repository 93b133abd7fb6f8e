"""The torch backend: tensors in, the reference float64 arithmetic, same tokens as numpy.

torch is imported only when this module is. CPU tensors are read in place
(no copy); tensors on other devices (CUDA) are copied to the host once, and
the same numpy kernels run on them with the same keyed uniforms, so a row's
token is identical on numpy, torch CPU and torch CUDA. Running the selection
on the GPU itself is not done yet.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["tensor_to_numpy", "uniforms_tensor"]


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
    return t.resolve_conj().resolve_neg().numpy()


def uniforms_tensor(u: np.ndarray, device: Any = "cpu") -> Any:
    """The keyed uniforms as a float64 tensor on ``device`` (bit-identical to the numpy ones)."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(u)).to(device)
