"""Exact draws on the device: inverse CDF over float64 weights, Gumbel-max, argmax.

The same draws as :mod:`faithful.draw`, with the keyed uniforms computed on the device
(:func:`faithful.torch_rng.device_uniforms`, bit-identical to numpy's):

- inverse CDF: the bands of the running float64 sum of ``w = exp(z - max z)`` in token
  order (``torch.cumsum``), and the first token whose cumulative weight exceeds
  ``u * total`` (``torch.searchsorted``); ``u * total`` is kept below ``total`` as the
  reference does, so a token of weight 0 is never returned;
- Gumbel-max: ``argmax(z - log(-log u))`` with one uniform per token (first maximum on ties);
- argmax: the first maximal logit.

The running sum is a float64 ``(B, V)`` tensor: the draw's working set. The reference sums
in blocks of 512 (:func:`faithful.draw.band_search`), torch in its own order: a band edge
can move by float64 rounding (about 1e-16 of the total), so a token can differ from the
reference's only when the uniform falls that close to an edge.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["argmax", "gumbel_max", "inverse_cdf"]


def inverse_cdf(w: Any, u: Any) -> tuple[Any, Any]:
    """Tokens by the bands of ``w`` and the row totals the bands were scaled to.

    Parameters:
        w: float64 ``(B, V)`` non-negative finite weights, a positive weight per row.
        u: float64 ``(B,)`` uniforms in (0, 1).

    Returns:
        ``(tokens int64 (B,), totals float64 (B,))``.

    Example:
        >>> inverse_cdf(torch.tensor([[0.8, 0.2]], dtype=torch.float64), torch.tensor([0.85], dtype=torch.float64))[0].tolist()
        [1]
    """
    cdf = torch.cumsum(w, dim=1)
    total = cdf[:, -1]
    target = torch.minimum(u * total, torch.nextafter(total, torch.zeros_like(total)))
    tokens = torch.searchsorted(cdf, target[:, None], right=True)[:, 0]
    return tokens.clamp_max(w.shape[1] - 1), total


def gumbel_max(z: Any, u: Any) -> Any:
    """``argmax(z - log(-log u))`` per row, int64 ``(B,)``; ``u`` float64 ``(B, V)`` in (0, 1)."""
    return torch.argmax(z - torch.log(-torch.log(u)), dim=1)


def argmax(z: Any) -> Any:
    """The first maximal logit per row, int64 ``(B,)``."""
    return torch.argmax(z, dim=1)
