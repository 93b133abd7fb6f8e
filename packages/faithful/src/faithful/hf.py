"""faithful's sampling inside Hugging Face ``model.generate``.

Keep ``model.generate(...)`` and get faithful's draw: :class:`FaithfulLogitsProcessor`
applies a faithful sampler (any spec: processors plus an exact draw on the keyed
uniforms of :mod:`faithful.rng`) to each step's logits and returns a row that is
``0`` at faithful's token and ``-inf`` everywhere else. Greedy decoding
(``do_sample=False``) then takes exactly that token, so Hugging Face's own
sampling state (``torch.multinomial`` and the global torch generator) is never
consulted; the model, its KV cache, batching, padding, stopping criteria and
streamers stay Hugging Face's.

For each chosen token the processor records two log-probabilities, named for what
they are:

- ``processed_logq``: ``log q(token)``, where ``q`` is the exact processed distribution
  faithful drew from (temperature, truncation, penalties...), from the sampler's float64
  normaliser;
- ``raw_logq``: ``log softmax(raw logits)(token)``, the model's own unprocessed
  log-probability of the token (the sum over a sequence is its log-probability under the model).

Draws are keyed like :func:`faithful.decode.ancestral_sample`: the row ``r`` of the
generate batch (``b * num_return_sequences + k``, Hugging Face's expansion order) at
generation step ``t`` uses the uniforms keyed by ``(seed, first_row + r, t)``. The same
seed and spec therefore give the same tokens as faithful's own ancestral sampling on
the same model, and a row's tokens do not depend on the batch around it.

On a GPU the draw runs with torch ops on the logits' own device (:mod:`faithful.torch_backend`):
the logits never leave it; only the token ids and the ``B`` drawn tokens and their log q are
read to the host each step (generate reads its own tokens for its stopping criteria anyway).

:func:`generate` wraps it all: pads the prompts, checks that no Hugging Face processor
ran before faithful's (the scores faithful saw must be the model's raw logits), and returns
an :class:`HFSampleResult`.

Example::

    from faithful.hf import generate
    out = generate(model, [[464, 3290]], spec="temperature:0.8+top-p:0.95", seed=7, max_new_tokens=20)
    out.tokens, out.processed_logq, out.raw_logq
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from faithful.decode._common import PAD, draws_from_the_model, log_softmax_at, reads_history
from faithful.errors import FaithfulError, SamplingParameterError, ShapeMismatchError
from faithful.rng import KeyedRNG, as_keyed_rng
from faithful.samplers import Sampler, parse_sampler_spec
from faithful.tensors import tensor_to_numpy

__all__ = ["FaithfulLogitsProcessor", "GenerateMismatchError", "HFSampleResult", "generate"]

# generate() arguments that would replace faithful's draw or run after it; refused with a reason
_REFUSED_KWARGS = {
    "do_sample": "faithful draws the token itself; generate runs greedy over faithful's one-hot",
    "num_beams": "beam search is not sampling; use faithful.decode.beam_search or stochastic_beam_search",
    "logits_processor": "processors after faithful's would change its choice; put them in the spec",
    "generation_config": "pass generation settings as keywords so faithful can check them",
    "assistant_model": "assisted decoding verifies draft tokens with its own rule, not faithful's draw",
}


class GenerateMismatchError(FaithfulError, RuntimeError):
    """Hugging Face ``generate`` did not do what faithful's draw requires (a processor ran before
    faithful's, a token other than faithful's was taken, or a processor was reused across calls)."""


def _as_sampler(spec: str | Sampler) -> Sampler:
    if isinstance(spec, Sampler):
        return spec
    if isinstance(spec, str):
        return parse_sampler_spec(spec, backend="torch")
    raise SamplingParameterError(
        f"`spec` must be a sampler spec string (e.g. 'temperature:0.8+top-p:0.9') or a faithful Sampler, "
        f"got {type(spec).__name__}"
    )


class FaithfulLogitsProcessor:
    """A Hugging Face logits processor that makes ``generate`` take faithful's keyed draw.

    Use one instance per ``generate`` call, with ``do_sample=False`` (greedy over the one-hot),
    and put it last (it is, when passed as ``logits_processor=[...]``). A second call, or a
    call that is not the continuation of the previous one, raises :class:`GenerateMismatchError`.

    Parameters:
        spec: a sampler spec (``"temperature:0.8+top-p:0.9"``, see
            :func:`faithful.samplers.parse_sampler_spec`) or a :class:`~faithful.samplers.Sampler`.
        seed: int seed, :class:`~faithful.rng.KeyedRNG`, or None (a fresh seed: read ``.seed``).
        eos_token_id: id(s) that end a row; a row that drew one is finished and no longer
            sampled (Hugging Face pads it), as in :func:`faithful.decode.ancestral_sample`.
        attention_mask: ``(N, L)`` or ``(B, L)`` mask of the prompt (1 = token, 0 = left padding);
            history-reading processors (penalties, no-repeat-ngram, DRY) then skip the padding.
            Without it the whole ``input_ids`` row is the history.
        first_row: global id of the batch's first row (row ``r`` is keyed as ``first_row + r``).
        raw_logits: optional callable returning the model's raw next-token logits of this step;
            when given, every step checks that the scores handed to this processor equal them
            (no Hugging Face processor ran before faithful's). :func:`generate` installs one.
        on_device: where to sample. None (default): with torch ops on the scores' own device
            (:mod:`faithful.torch_backend`) when that is not the CPU, so a CUDA generate never
            copies logits to the host; CPU scores are read in place by the numpy reference.
            True: always on the scores' device (CPU too); False: always the numpy reference.
            Either way the tokens are the same; ``processed_logq`` agrees to 1e-12.

    Attributes:
        sampler: the faithful sampler. seed: the seed used. steps: number of steps drawn.

    Example::

        proc = FaithfulLogitsProcessor("top-p:0.9", seed=0, eos_token_id=model.config.eos_token_id)
        out = model.generate(ids, attention_mask=mask, do_sample=False, logits_processor=[proc])
        proc.processed_logq()  # (N, T) log q of each chosen token
    """

    def __init__(
        self,
        spec: str | Sampler = "sample",
        seed: int | KeyedRNG | None = None,
        *,
        eos_token_id: int | Sequence[int] | None = None,
        attention_mask: Any = None,
        first_row: int = 0,
        raw_logits: Callable[[], Any] | None = None,
        on_device: bool | None = None,
    ) -> None:
        self.sampler = _as_sampler(spec)
        if on_device is not None and not isinstance(on_device, bool):
            raise SamplingParameterError(f"`on_device` must be True, False or None (auto), got {on_device!r}")
        self._on_device = on_device
        self._device_sampler: Sampler | None = None
        self._rng = as_keyed_rng(seed)
        self.seed = self._rng.seed
        if eos_token_id is None:
            self._eos = np.zeros(0, dtype=np.int64)
        else:
            ids = [eos_token_id] if isinstance(eos_token_id, int | np.integer) else list(eos_token_id)
            self._eos = np.asarray(ids, dtype=np.int64)
        if isinstance(first_row, bool) or not isinstance(first_row, int | np.integer):
            raise SamplingParameterError(f"`first_row` must be an int, got {first_row!r}")
        self._first_row = int(first_row)
        self._mask = None if attention_mask is None else tensor_to_numpy(attention_mask).astype(np.int64)
        self._raw_logits = raw_logits
        self._needs_history = reads_history(self.sampler)
        self._plain = draws_from_the_model(self.sampler)
        self._prev: np.ndarray | None = None  # input_ids of the previous call (host copy)
        self._chosen: np.ndarray | None = None
        self._finished: np.ndarray | None = None
        self._starts: np.ndarray | None = None
        self._tokens: list[np.ndarray] = []
        self._processed: list[np.ndarray] = []
        self._raw: list[np.ndarray] = []

    @property
    def eos_token_ids(self) -> np.ndarray:
        """int64 ``(E,)``: the ids that end a row (empty: none)."""
        return self._eos.copy()

    @property
    def steps(self) -> int:
        """How many steps this processor has drawn."""
        return len(self._tokens)

    def _begin(self, ids: np.ndarray) -> None:
        n, width = ids.shape
        if self._mask is None:
            self._starts = np.zeros(n, dtype=np.int64)
        else:
            mask = self._mask
            if mask.shape[1] != width or n % mask.shape[0]:
                raise ShapeMismatchError(
                    f"`attention_mask` {mask.shape} does not fit the prompt batch {ids.shape}; "
                    "pass the mask given to generate"
                )
            mask = np.repeat(mask, n // mask.shape[0], axis=0)  # generate's repeat_interleave order
            starts = width - mask.sum(axis=1)
            left_padded = np.arange(width)[None, :] >= starts[:, None]
            if not np.array_equal(mask != 0, left_padded):
                raise ShapeMismatchError(
                    "`attention_mask` must be left padding (zeros, then ones) for a decoder-only generate"
                )
            self._starts = starts.astype(np.int64)
        self._finished = np.zeros(n, dtype=bool)

    def _continue(self, ids: np.ndarray) -> None:
        prev, chosen, finished = self._prev, self._chosen, self._finished
        assert prev is not None and chosen is not None and finished is not None
        if ids.shape != (prev.shape[0], prev.shape[1] + 1) or not np.array_equal(ids[:, :-1], prev):
            raise GenerateMismatchError(
                f"this FaithfulLogitsProcessor already served a generate call (input {prev.shape}, now "
                f"{ids.shape}); make a new processor for each generate call"
            )
        wrong = (ids[:, -1] != chosen) & ~finished
        if wrong.any():
            r = int(np.flatnonzero(wrong)[0])
            raise GenerateMismatchError(
                f"generate took token {int(ids[r, -1])} in row {r} where faithful drew {int(chosen[r])}: "
                "run it with do_sample=False and no processor after faithful's (if that row had ended, "
                "pass the processor the eos_token_id generate stops at)"
            )
        finished |= np.isin(chosen, self._eos)

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        """Draw faithful's token for every unfinished row; return the ``(N, V)`` one-hot (0 / -inf) scores."""
        import torch

        ids = tensor_to_numpy(input_ids).astype(np.int64)
        if self._prev is None:
            self._begin(ids)
        else:
            self._continue(ids)
        if self._raw_logits is not None:
            raw = self._raw_logits()
            if (
                raw is None
                or raw.shape != scores.shape
                or not torch.equal(raw.to(device=scores.device, dtype=scores.dtype), scores)
            ):
                raise GenerateMismatchError(
                    "the scores handed to faithful are not the model's raw logits: generate ran its own "
                    "processors first (from model.generation_config or keywords: repetition_penalty, "
                    "no_repeat_ngram_size, bad_words_ids, suppress_tokens, min_new_tokens...); unset them "
                    "and put the equivalent in faithful's spec"
                )
        finished, starts = self._finished, self._starts
        assert finished is not None and starts is not None
        n = ids.shape[0]
        step = len(self._tokens)
        tokens = np.full(n, PAD, dtype=np.int64)
        processed = np.zeros(n)
        raw_lq = np.zeros(n)
        active = np.flatnonzero(~finished)
        if active.size:
            history: Any = [ids[i, starts[i] :] for i in active] if self._needs_history else None
            on_device = scores.device.type != "cpu" if self._on_device is None else self._on_device
            if on_device:
                chosen, log_q, raw = self._draw_on_device(scores, active, history, step)
            else:
                x = tensor_to_numpy(scores)
                xa = x if active.size == n else x[active]
                res = self.sampler(
                    xa, rng=self._rng, step=step, rows=self._first_row + active, history=history
                )
                chosen = np.asarray(res.tokens, dtype=np.int64)
                log_q = np.asarray(res.logprobs, dtype=np.float64)
                # as ancestral_sample: the plain sampler's q is the model's distribution
                raw = log_q if self._plain else log_softmax_at(np.asarray(xa), chosen)
            tokens[active] = chosen
            processed[active] = log_q
            raw_lq[active] = raw
        self._tokens.append(tokens)
        self._processed.append(processed)
        self._raw.append(raw_lq)
        self._prev = ids
        # finished rows get a one-hot too (generate replaces their token by the pad id)
        self._chosen = np.where(finished, 0, tokens)
        out = torch.full_like(scores, -float("inf"))
        index = torch.from_numpy(self._chosen).to(out.device)[:, None]
        return out.scatter_(1, index, 0.0)

    def _draw_on_device(
        self, scores: Any, active: np.ndarray, history: Any, step: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """faithful's draw with torch ops on the scores' device; only the ``B`` results come back."""
        import torch

        if self._device_sampler is None:
            s = self.sampler
            # the same processors, draw and mirostat state, sampled by faithful.torch_backend
            self._device_sampler = (
                s
                if s.backend == "torch"
                else Sampler(s.name, s.processors, draw=s.draw, backend="torch", mirostat=s.mirostat)
            )
        n = scores.shape[0]
        if active.size == n:
            xa = scores
        else:
            from faithful.torch_backend.processors import host_to_device

            xa = scores.index_select(0, host_to_device(active.astype(np.int64), scores.device))
        res: Any = self._device_sampler(
            xa, rng=self._rng, step=step, rows=self._first_row + active, history=history
        )
        if self._plain:
            raw = res.logprobs
        else:
            raw = torch.log_softmax(xa.to(torch.float64), dim=-1).gather(1, res.tokens[:, None])[:, 0]
        # the caller (generate, its stopping criteria) needs the tokens on the host: B values, not logits
        return (
            res.tokens.cpu().numpy().astype(np.int64),
            res.logprobs.cpu().numpy(),
            raw.cpu().numpy(),
        )

    @staticmethod
    def _stack(parts: list[np.ndarray], steps: int | None) -> np.ndarray:
        """Per-step ``(N,)`` records as ``(N, T)``; a row's entries after it finished are already padding."""
        t = len(parts) if steps is None else steps
        if t > len(parts):
            raise ShapeMismatchError(f"asked for {t} steps, the processor drew {len(parts)}")
        if t == 0:
            n = parts[0].shape[0] if parts else 0
            return np.zeros((n, 0), dtype=parts[0].dtype if parts else np.float64)
        return np.stack(parts[:t], axis=1)

    def tokens(self, steps: int | None = None) -> np.ndarray:
        """int64 ``(N, T)``: faithful's token per row and step, ``PAD`` (-1) after a row finished."""
        return self._stack(self._tokens, steps).astype(np.int64)

    def processed_logq(self, steps: int | None = None) -> np.ndarray:
        """float64 ``(N, T)``: ``log q`` of each chosen token under the processed distribution; 0 at padding."""
        return self._stack(self._processed, steps)

    def raw_logq(self, steps: int | None = None) -> np.ndarray:
        """float64 ``(N, T)``: the model's unprocessed log-probability of each chosen token; 0 at padding."""
        return self._stack(self._raw, steps)


@dataclass(frozen=True)
class HFSampleResult:
    """What :func:`generate` returns. ``N = B * num_return_sequences`` rows, row ``b * K + k``.

    Attributes:
        sequences: Hugging Face's output, long ``(N, L + T)`` (prompt, left padding included).
        tokens: int64 ``(N, T)`` generated ids, ``PAD`` (-1) after each row's end (an ending EOS included).
        lengths: int64 ``(N,)`` generated tokens per row.
        finished: bool ``(N,)`` whether the row ended with EOS.
        processed_logq: float64 ``(N, T)``: ``log q(token)`` under the processed distribution
            faithful drew from; 0 at padding.
        raw_logq: float64 ``(N, T)``: the model's own unprocessed log-probability of each token
            (``log_softmax`` of the raw logits); 0 at padding.
        seed: the seed of the keyed uniforms (reproduces the run).
    """

    sequences: Any
    tokens: np.ndarray
    lengths: np.ndarray
    finished: np.ndarray
    processed_logq: np.ndarray
    raw_logq: np.ndarray
    seed: int

    @property
    def logprobs(self) -> np.ndarray:
        """float64 ``(N,)``: each continuation's log-probability under the model (sum of ``raw_logq``)."""
        out: np.ndarray = self.raw_logq.sum(axis=1)
        return out

    @property
    def proposal_logprobs(self) -> np.ndarray:
        """float64 ``(N,)``: each continuation's log-probability under the distributions drawn from."""
        out: np.ndarray = self.processed_logq.sum(axis=1)
        return out

    def sequences_list(self) -> list[list[int]]:
        """The generated ids of each row as lists (no padding)."""
        return [self.tokens[i, : self.lengths[i]].tolist() for i in range(self.tokens.shape[0])]


def _config_id(model: Any, name: str) -> Any:
    gen = getattr(model, "generation_config", None)
    value = getattr(gen, name, None) if gen is not None else None
    return getattr(model.config, name, None) if value is None else value


def _check_prompt_ids(model: Any, ids: Any) -> None:
    """Token ids inside the model's embedding table, padding included (the model embeds every
    position): an id past it was a bare ``IndexError: index out of range in self`` (a device assert
    on CUDA)."""
    import torch

    if ids.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
        raise ShapeMismatchError(f"`prompts` must hold int token ids, got dtype {ids.dtype}")
    emb = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    size = getattr(emb, "num_embeddings", None) or getattr(model.config, "vocab_size", None)
    if size is None:
        return
    live = ids.reshape(-1)
    if live.numel() and bool(((live < 0) | (live >= size)).any()):
        bad = sorted({int(t) for t in live[(live < 0) | (live >= size)].tolist()})[:10]
        raise ShapeMismatchError(
            f"prompts hold token ids {bad} outside the model's vocabulary 0..{size - 1}; "
            "encode prompts with the model's own tokenizer"
        )


def _left_pad(prompts: Sequence[Sequence[int]], pad: int, device: Any) -> tuple[Any, Any]:
    import torch

    if isinstance(prompts, str) or not len(prompts):
        raise ShapeMismatchError("`prompts` must be a non-empty list of token-id lists (or a (B, L) tensor)")
    rows = [list(p) for p in prompts]
    if any(not r for r in rows):
        raise ShapeMismatchError("every prompt needs at least one token (a causal LM conditions on it)")
    for i, r in enumerate(rows):
        # torch.tensor(r, dtype=long) truncated 1.5 to 1 silently
        if any(isinstance(t, bool) or not isinstance(t, int | np.integer) for t in r):
            raise ShapeMismatchError(f"prompt {i} must hold int token ids, got {r[:8]}")
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, width - len(r) :] = torch.tensor(r, dtype=torch.long)
        mask[i, width - len(r) :] = 1
    return ids.to(device), mask.to(device)


def generate(
    model: Any,
    prompts: Any,
    *,
    spec: str | Sampler = "sample",
    seed: int | KeyedRNG | None = None,
    max_new_tokens: int,
    attention_mask: Any = None,
    num_return_sequences: int = 1,
    eos_token_id: int | Sequence[int] | None = None,
    pad_token_id: int | None = None,
    first_row: int = 0,
    on_device: bool | None = None,
    **generate_kwargs: Any,
) -> HFSampleResult:
    """``model.generate`` with faithful's sampling: keyed draws from the exact processed q.

    Parameters:
        model: a Hugging Face decoder-only model (``AutoModelForCausalLM``), in eval mode.
        prompts: a long ``(B, L)`` tensor (with ``attention_mask`` for left padding) or a list of
            token-id lists (left-padded here with the pad id).
        spec: a sampler spec or :class:`~faithful.samplers.Sampler` (default ``"sample"``: plain sampling).
        seed: int, :class:`~faithful.rng.KeyedRNG`, or None (fresh; read ``result.seed``).
        max_new_tokens: at most this many new tokens per row (>= 1).
        attention_mask: ``(B, L)`` mask for a tensor ``prompts`` (1 = token, 0 = left padding).
        num_return_sequences: ``K`` samples per prompt (rows ``b * K + k``, as faithful's ancestral_sample).
        eos_token_id, pad_token_id: default the model's generation config (then its config).
        first_row: global id of the first row, so sub-batches reproduce a larger batch's draws.
        on_device: where faithful samples (see :class:`FaithfulLogitsProcessor`): by default on the
            model's device with torch ops when that is a GPU (the logits never leave it).
        generate_kwargs: passed to ``model.generate`` (e.g. ``stopping_criteria``, ``streamer``,
            ``use_cache``); those that would replace faithful's draw (``do_sample``, ``num_beams``,
            ``logits_processor``, ``generation_config``, ``assistant_model``) are refused.

    Returns:
        :class:`HFSampleResult` (tokens, ``processed_logq``, ``raw_logq``, ...).

    Raises:
        SamplingParameterError: a bad spec, seed or refused keyword.
        ShapeMismatchError: prompts/mask of the wrong shape or a mask that is not left padding.
        GenerateMismatchError: generate ran a processor of its own before faithful's (e.g. a
            ``repetition_penalty`` in the model's generation config) or took another token.

    Example::

        out = generate(model, [[1, 2, 3]], spec="top-k:40+temperature:0.7", seed=0, max_new_tokens=8)
        out.sequences_list(), out.processed_logq, out.raw_logq
    """
    import torch

    for key, why in _REFUSED_KWARGS.items():
        if key in generate_kwargs and not (key == "num_beams" and generate_kwargs[key] == 1):
            raise SamplingParameterError(f"faithful.hf.generate does not take `{key}`: {why}")
    generate_kwargs.pop("num_beams", None)
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise SamplingParameterError(f"`max_new_tokens` must be an int >= 1, got {max_new_tokens!r}")
    k = num_return_sequences
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise SamplingParameterError(f"`num_return_sequences` must be an int >= 1, got {k!r}")
    sampler = _as_sampler(spec)
    if eos_token_id is None:
        eos_token_id = _config_id(model, "eos_token_id")
    if pad_token_id is None:
        pad_token_id = _config_id(model, "pad_token_id")
    if pad_token_id is None:
        first = eos_token_id if isinstance(eos_token_id, int | None) else next(iter(eos_token_id), None)
        pad_token_id = 0 if first is None else int(first)
    device = next(iter(model.parameters())).device
    if isinstance(prompts, torch.Tensor):
        if prompts.ndim != 2:
            raise ShapeMismatchError(f"`prompts` must be a (B, L) tensor, got shape {tuple(prompts.shape)}")
        ids = prompts.to(device)
        mask = torch.ones_like(ids) if attention_mask is None else attention_mask.to(device)
        if mask.shape != ids.shape:
            raise ShapeMismatchError(
                f"`attention_mask` {tuple(mask.shape)} must match prompts {tuple(ids.shape)}"
            )
    else:
        if attention_mask is not None:
            raise ShapeMismatchError("`attention_mask` goes with a tensor of prompts; lists are padded here")
        ids, mask = _left_pad(prompts, int(pad_token_id), device)
    # greedy generate refuses num_return_sequences > 1: expand in its own order (repeat_interleave)
    _check_prompt_ids(model, ids)
    if k > 1:
        ids, mask = ids.repeat_interleave(k, dim=0), mask.repeat_interleave(k, dim=0)
    seen: list[Any] = []

    def keep_logits(module: Any, args: Any, output: Any) -> None:
        logits = getattr(output, "logits", None)
        seen[:] = [None if logits is None else logits[:, -1, :]]

    proc = FaithfulLogitsProcessor(
        sampler,
        seed,
        eos_token_id=eos_token_id,
        attention_mask=mask,
        first_row=first_row,
        raw_logits=lambda: seen[0] if seen else None,
        on_device=on_device,
    )
    from transformers import LogitsProcessorList

    handle = model.register_forward_hook(keep_logits)
    try:
        out = model.generate(
            ids,
            attention_mask=mask,
            do_sample=False,
            num_beams=1,
            max_new_tokens=max_new_tokens,
            eos_token_id=eos_token_id,
            pad_token_id=pad_token_id,
            logits_processor=LogitsProcessorList([proc]),
            **generate_kwargs,
        )
    finally:
        handle.remove()
    sequences = out if isinstance(out, torch.Tensor) else out.sequences
    t = int(sequences.shape[1] - ids.shape[1])
    tokens = proc.tokens(t)
    taken = tensor_to_numpy(sequences[:, ids.shape[1] :]).astype(np.int64)
    drawn = tokens != PAD
    if not np.array_equal(taken[drawn], tokens[drawn]):
        raise GenerateMismatchError(
            "generate's output differs from faithful's draws: run it with do_sample=False and no other processor"
        )
    lengths = drawn.sum(axis=1).astype(np.int64)
    eos = proc.eos_token_ids
    last = tokens[np.arange(tokens.shape[0]), np.maximum(lengths - 1, 0)]
    finished = (lengths > 0) & np.isin(last, eos)
    return HFSampleResult(
        sequences=sequences,
        tokens=tokens,
        lengths=lengths,
        finished=finished,
        processed_logq=proc.processed_logq(t),
        raw_logq=proc.raw_logq(t),
        seed=proc.seed,
    )
