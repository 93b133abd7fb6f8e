"""The torch backend: every processor of the table and every draw in torch ops on the tensor's own device.

``make_sampler(..., backend="torch")`` called with a torch tensor (CPU or CUDA) runs
here: nothing is copied to the host, and nothing waits for the device unless the caller
asks for a Python value (the sampler object checks each call's rows once, a read of
``B`` status codes; :func:`sample_tensor` with ``check=False`` reads nothing). Results
are tensors on the logits' device (:class:`TorchSampleResult`). The keyed uniforms are
made on the device (:mod:`faithful.torch_rng`), bit for bit numpy's, so the same seed,
rows and steps give the same tokens on numpy, CPU torch and CUDA.

Precision of each step (why the drawn token's q is still exact):

================================  =======================================================
step                              precision
================================  =======================================================
logits                            cast to float64 on the device (exact from bf16/fp16/fp32)
temperature, min-p, penalties,    float64 elementwise: the same IEEE operations as numpy,
bias, masks, top-n-sigma          so the same bits
top-k                             ``torch.topk`` k-th largest value, ``z >= kth``: exact
top-p, typical, mirostat v1       radix select of the float64 threshold (no sort), float64 masses
epsilon, eta, XTC, mirostat v2    float64 probabilities against the bound
normaliser                        float64 ``exp(z - max z)`` summed on the device
draw                              float64 running sum, ``u * total`` search (inverse CDF);
                                  ``argmax(z - log(-log u))`` (Gumbel)
================================  =======================================================

Tolerance against the numpy reference (tested on CPU torch): the kept set of every
truncation is identical (ties included) unless a probability or partial mass lies within
float64 rounding (~1e-16 relative) of its bound; the token is identical unless the uniform
lies within ~1e-16 of a band edge; ``log q`` of the drawn token and ``q`` agree to
``1e-12`` (absolute on ``log q``, relative on ``q``); torch's ``exp``/``log`` and its
summation order differ from numpy's by an ulp or so, nothing more.

Memory per call: a few float64 / int64 ``(B, V)`` tensors (logits, weights, keys, the
running sum) and a float64 histogram of at most ``(B, min(2V, 2048) + 1)`` for the radix
select (on CPU, where it is compacted: ``(B, min(2V, 16384) + 1)``, then the tokens of one
bucket); nothing grows with iterations: ``O(B x V)`` in all. Mirostat keeps its per-row ``mu`` on the host (:class:`faithful.mirostat.Mirostat`),
so a mirostat sampler reads ``B`` log-probabilities back per call.
"""

from __future__ import annotations

from faithful.torch_backend.sampler import TorchSampleResult, distribution_tensor, sample_tensor

__all__ = ["TorchSampleResult", "distribution_tensor", "sample_tensor"]
