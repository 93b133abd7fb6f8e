"""One call of a sampler on the device: validate, process, draw; results stay on the device.

:func:`sample_tensor` is what :class:`faithful.samplers.Sampler` runs for a torch tensor
when built with ``backend="torch"``; :func:`distribution_tensor` is its
:meth:`~faithful.samplers.Sampler.distribution`. Bad rows (NaN / +inf logits, a row a
mask emptied) are recorded in a per-row status code instead of being raised on the spot,
because raising needs the host to read device memory; :meth:`TorchSampleResult.check`
reads the codes once (one small device-to-host copy) and raises the reference's error.
With ``check=False`` nothing is read back at all: the status tensor tells the caller which
rows are bad (their tokens are meaningless).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from faithful._numeric import check_row_max
from faithful.errors import InvalidLogitsError, ShapeMismatchError
from faithful.processors import AllowedTokens, ForbiddenTokens, History, LogitBias, NoRepeatNGram, Processor
from faithful.rng import resolve_rng
from faithful.sampler_core import SampleResult, _check_rows
from faithful.torch_backend.draw import argmax, gumbel_max, inverse_cdf
from faithful.torch_backend.processors import (
    Context,
    apply_on_device,
    host_to_device,
    mirostat_truncate,
    row_status,
    uniforms_for,
)

if TYPE_CHECKING:
    from faithful.sampler_core import Sampler

__all__ = ["TorchSampleResult", "distribution_tensor", "sample_tensor"]

# per-row status codes: 0 ok; 1 NaN/+inf in the input; 2 input row all -inf;
# 3 + 2j / 4 + 2j: NaN/+inf / empty after processor j (j = len(processors): after all of them)
OK = 0


@dataclass(frozen=True)
class TorchSampleResult(SampleResult):
    """What a sampler returns for a torch tensor on the torch backend: tensors on the logits' device.

    Attributes:
        tokens: int64 ``(B,)``. logprobs: float64 ``(B,)``, ``log q[token]``.
        q: float64 ``(B, V)`` when asked for, else None. seed: as :class:`SampleResult`.
        status: int32 ``(B,)`` per-row codes (0: fine); see :meth:`check`.
        names: what each status code's check ran after (for the error message).
    """

    tokens: Any
    logprobs: Any
    q: Any = None
    seed: int | None = None
    status: Any = None
    names: tuple[str | None, ...] = ()

    def check(self) -> TorchSampleResult:
        """Raise the numpy reference's error for the first bad row, if any (one device read).

        Raises:
            InvalidLogitsError: NaN / +inf in the logits, or after a processor.
            EmptySupportError: a row has no token left.
        """
        if self.status is not None and self.status.numel():
            raise_for_status(self.status.cpu().numpy(), self.names)
        return self


def raise_for_status(codes: np.ndarray, names: Sequence[str | None]) -> None:
    """Raise as :func:`faithful._numeric.check_row_max` would at the first failing check."""
    if not codes.any():
        return
    first = int(codes[codes != OK].min())
    nan_code = first if first % 2 == 1 else first - 1  # odd: NaN / +inf, even: empty
    top = np.where(codes == first, np.nan if first == nan_code else -np.inf, 0.0)
    check_row_max(top, after=names[(nan_code - 1) // 2])


def _names(sampler: Sampler) -> tuple[str | None, ...]:
    """The ``after`` text of each check, indexed by ``(code - 1) // 2``, as the reference words it."""
    out: list[str | None] = [None]
    for proc in sampler.processors:
        if isinstance(proc, LogitBias):
            out.append("logit_bias")
        elif isinstance(proc, NoRepeatNGram):
            out.append(f"no_repeat_ngram_size={int(proc.size)}")
        elif isinstance(proc, AllowedTokens | ForbiddenTokens):
            out.append(proc.name)
        else:
            out.append(type(proc).__name__)
    out.append(f"the processors of {sampler.name!r}")
    return tuple(out)


def _logits64(logits: Any) -> Any:
    """Validate shape and dtype (host facts only) and return float64 logits on the same device."""
    if logits.device.type == "meta":
        # a meta tensor has a shape and no values: nothing to sample from (torch would fail later,
        # at the first read, with "Cannot copy out of meta tensor")
        raise InvalidLogitsError(
            "logits are on the 'meta' device (a shape without values); pass the model's real "
            "logits (load its weights onto a CPU or CUDA device)"
        )
    if logits.dtype.is_complex or logits.dtype == torch.bool:
        raise InvalidLogitsError(f"logits must be real numbers, got dtype {logits.dtype}")
    if logits.ndim != 2 or logits.shape[1] < 1:
        hint = "; for one row use logits[None, :]" if logits.ndim == 1 else ""
        raise InvalidLogitsError(
            f"logits must have shape (batch, vocab) with vocab >= 1, got {tuple(logits.shape)}{hint}"
        )
    return logits.detach().to(torch.float64)  # bfloat16 / float16 / float32 convert exactly


def _row_ids(rows: Any, b: int, device: Any) -> tuple[np.ndarray | None, Any]:
    """(host row ids or None, device row ids); a tensor of rows is used where it is."""
    if rows is None:
        return np.arange(b, dtype=np.int64), torch.arange(b, dtype=torch.int64, device=device)
    if isinstance(rows, torch.Tensor):
        if (
            tuple(rows.shape) != (b,)
            or rows.is_floating_point()
            or rows.is_complex()
            or rows.dtype == torch.bool
        ):
            raise ShapeMismatchError(
                f"`rows` must be {b} int row ids (one per logits row, each within int64), "
                f"got shape {tuple(rows.shape)} of dtype {rows.dtype}"
            )
        return None, rows.to(device=device, dtype=torch.int64)
    host = _check_rows(rows, b)
    return host, host_to_device(host, device)


def _final_logits(
    sampler: Sampler, logits: Any, history: History | None, rows: Any, rng: Any, step: int
) -> tuple[Any, Any, np.ndarray | None, Any]:
    """(processed float64 logits, status, host rows, device rows), the processors run on the device."""
    z = _logits64(logits)
    b = z.shape[0]
    rows_host, rows_device = _row_ids(rows, b, z.device)
    if history is not None and len(history) != b:
        raise ShapeMismatchError(f"`history` must have one sequence per row ({b}), got {len(history)}")
    status = row_status(z, 1)
    if sampler.draw == "argmax":
        return z, status, rows_host, rows_device
    ctx = Context(history, rng, rows_host, rows_device, step, status)
    ctx.lane = z.shape[1] if sampler.draw == "gumbel" else 1  # the lanes after the draw's
    z = apply_on_device(z, sampler.processors, ctx)
    if sampler.mirostat is not None:
        if rows_host is None:
            rows_host = rows_device.cpu().numpy()  # mirostat's state is keyed by host row ids
        z = mirostat_truncate(sampler.mirostat, z, rows_host)
    status = torch.where(ctx.status == OK, row_status(z, 3 + 2 * len(sampler.processors)), ctx.status)
    return z, status, rows_host, rows_device


def _sanitized(z: Any, status: Any) -> Any:
    """Bad rows become uniform, so no NaN or empty row reaches a draw's index arithmetic."""
    return torch.where((status != OK)[:, None], 0.0, z)


def sample_tensor(
    sampler: Sampler,
    logits: Any,
    *,
    rng: Any = None,
    step: int = 0,
    rows: Sequence[int] | np.ndarray | Any | None = None,
    history: History | None = None,
    return_q: bool = False,
    check: bool = True,
) -> TorchSampleResult:
    """Draw one token per row with torch ops on ``logits``' device; see :meth:`Sampler.__call__`.

    Parameters:
        sampler: the :class:`~faithful.samplers.Sampler` (its processors, draw and mirostat).
        logits: torch tensor ``(B, V)``, any real dtype, any device.
        rng, step, rows, history, return_q: as :meth:`Sampler.__call__`; ``rows`` may be a
            tensor (used on its device).
        check: read the status back and raise the reference's error for a bad row (one
            device-to-host copy of ``B`` int32); False: no read-back at all.

    Returns:
        :class:`TorchSampleResult` with tensors on the logits' device.

    Raises:
        InvalidLogitsError, EmptySupportError (with ``check``), ShapeMismatchError,
        SamplingParameterError.

    Example:
        >>> from faithful.samplers import make_sampler
        >>> s = make_sampler(top_k=2, backend="torch")
        >>> r = s(torch.tensor([[0.0, 1.0, 2.0]]), rng=0)
        >>> r.tokens.tolist(), r.tokens.device.type
        ([2], 'cpu')
    """
    source = resolve_rng(rng)
    seed = getattr(source, "seed", None)
    seed = seed if isinstance(seed, int) else None
    z, status, rows_host, rows_device = _final_logits(sampler, logits, history, rows, source, step)
    b, v = z.shape
    device = z.device
    if b == 0:
        empty = torch.zeros(0, dtype=torch.int64, device=device)
        q0 = torch.zeros((0, v), dtype=torch.float64, device=device) if return_q else None
        return TorchSampleResult(empty, empty.to(torch.float64), q0, seed, status, _names(sampler))
    z = _sanitized(z, status)
    r = torch.arange(b, device=device)
    if sampler.draw == "argmax":
        tokens = argmax(z)
        q = None
        if return_q:
            q = torch.zeros_like(z).scatter_(1, tokens[:, None], 1.0)
        zeros = torch.zeros(b, dtype=torch.float64, device=device)
        result = TorchSampleResult(tokens, zeros, q, None, status, _names(sampler))
        return result.check() if check else result
    m = z.amax(dim=1)
    w = torch.exp(z - m[:, None])
    if sampler.draw == "gumbel":
        u = uniforms_for(source, rows_host, rows_device, step, v, device)
        tokens = gumbel_max(z, u)
        total = w.sum(dim=1)
    else:
        u1 = uniforms_for(source, rows_host, rows_device, step, 1, device)[:, 0]
        tokens, total = inverse_cdf(w, u1)
    logprobs = z[r, tokens] - m - torch.log(total)
    q = w / total[:, None] if return_q else None
    result = TorchSampleResult(tokens, logprobs, q, seed, status, _names(sampler))
    if check:
        result.check()
    if sampler.mirostat is not None:
        assert rows_host is not None  # set by _final_logits for mirostat
        # mirostat's mu lives on the host (Mirostat.mu): its update reads the B logprobs back
        sampler.mirostat.update(rows_host, logprobs.cpu().numpy())
    return result


def distribution_tensor(
    sampler: Sampler,
    logits: Any,
    *,
    history: History | None = None,
    rows: Any = None,
    rng: Any = None,
    step: int = 0,
    check: bool = True,
) -> Any:
    """The exact q that :func:`sample_tensor` draws from, float64 ``(B, V)`` on the logits' device.

    Raises:
        As :meth:`Sampler.distribution` (with ``check``).
    """
    source = resolve_rng(rng) if rng is not None else None
    z, status, _, _ = _final_logits(sampler, logits, history, rows, source, step)
    if check and status.numel():
        raise_for_status(status.cpu().numpy(), _names(sampler))
    z = _sanitized(z, status)
    if sampler.draw == "argmax":
        return torch.zeros_like(z).scatter_(1, argmax(z)[:, None], 1.0)
    w = torch.exp(z - z.amax(dim=1, keepdim=True))
    total = torch.cumsum(w, dim=1)[:, -1] if sampler.draw == "inverse_cdf" else w.sum(dim=1)
    return w / total[:, None]


def processors_supported(processors: Sequence[Processor]) -> bool:
    """True when every processor has a device rule (the table's processors all do)."""
    from faithful.torch_backend.processors import DEVICE_PROCESSORS

    return all(type(p) in DEVICE_PROCESSORS for p in processors)
