"""Adapter: a Hugging Face causal LM (with its KV cache) as a :class:`~faithful.models.base.LanguageModel`.

torch and transformers are optional: this module imports them only when a model
is wrapped or loaded, so ``import faithful.models`` never needs them.
"""

from __future__ import annotations

import copy
import inspect
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from faithful.models.base import (
    EmptyPromptError,
    FloatArray,
    IntArray,
    ModelError,
    VocabMismatchError,
    as_index_array,
    as_prompts,
    check_block,
)

__all__ = ["HFBlock", "HFCausalLM", "HFState", "HFTokenizer", "load_hf_model"]


_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.json",
    "tokenizer.model",
    "spiece.model",
)


def _torch() -> Any:
    try:
        import torch
    except ImportError:  # pragma: no cover - depends on the environment
        raise ModelError(
            "the Hugging Face adapter needs torch and transformers: pip install 'faithful[torch]' transformers"
        ) from None
    return torch


@dataclass(frozen=True)
class HFState:
    """State of :class:`HFCausalLM` for ``B`` rows.

    Attributes:
        cache: the model's KV cache (never mutated once in a state: methods work on shallow copies).
        attention_mask: long ``(B, L)``, 0 at left padding.
        next_position: long ``(B,)`` position id of the next token.
        logits: float ``(B', V)`` next-token logits of the rows before the last :meth:`HFCausalLM.select`.
        logits_rows: long ``(B,)`` rows of ``logits`` that this state's rows read, or None for all
            (selecting rows does not copy the ``(B, V)`` logits, which are usually replaced right after).
    """

    cache: Any
    attention_mask: Any
    next_position: Any
    logits: Any
    logits_rows: Any = None


class HFTokenizer:
    """Wrap a Hugging Face tokenizer as a faithful tokenizer (``encode``/``decode``/``vocab_size``)."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer

    @property
    def vocab_size(self) -> int:
        """Number of ids the tokenizer can emit (added tokens included)."""
        return len(self.tokenizer)

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` without special tokens."""
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids``, special tokens dropped."""
        return str(self.tokenizer.decode(list(ids), skip_special_tokens=True))


def _fork_cache(cache: Any) -> Any:
    """A shallow copy whose layers can be updated/reordered without touching ``cache``.

    The dynamic cache's update concatenates into new tensors and reorder index-selects into new tensors,
    so copying the layer objects (not the tensors) is enough to keep old states valid.
    """
    new = copy.copy(cache)
    if hasattr(cache, "layers"):
        new.layers = [copy.copy(layer) for layer in cache.layers]
    return new


def _plain_layers(cache: Any) -> bool:
    """Whether every layer of ``cache`` is a full (not sliding, not quantized) dynamic layer.

    Those hold every position's keys and values as ``(B, H, L, D)`` tensors, so cropping the
    last positions or left-padding them is exact; other layers keep a window or a summary.
    """
    layers: list[Any] = list(getattr(cache, "layers", None) or [])
    return bool(layers) and all(type(layer).__name__ == "DynamicLayer" for layer in layers)


@dataclass(frozen=True)
class HFBlock:
    """A block of ``g`` tokens per row scored by :meth:`HFCausalLM.score_block` in one forward pass.

    Attributes:
        model: the adapter. before: the state the block was appended to.
        tokens: int64 ``(B, g)``. logits: float ``(B, g, V)``, row ``[:, i]`` after ``i + 1`` tokens.
        after: the state after all ``g`` tokens (its cache holds the block).
    """

    model: HFCausalLM
    before: HFState
    tokens: Any
    logits: Any
    after: HFState

    def logits_at(self, i: int) -> Any:
        """``(B, V)`` logits after ``i + 1`` tokens of the block (a view, the model's dtype)."""
        return self.logits[:, i]

    def state(self, j: int) -> HFState:
        """The state after ``j`` tokens, ``1 <= j <= g``: the block's cache cropped to them (no forward)."""
        g = self.logits.shape[1]
        if not 1 <= j <= g:
            raise ModelError(f"a block of {g} tokens has states 1..{g}, got {j}")
        if j == g:
            return self.after
        if not _plain_layers(self.after.cache):  # no exact crop: re-advance along the first j tokens
            st = self.before
            for i in range(j):
                st = self.model.advance(st, self.tokens[:, i])
            return st
        cache = _fork_cache(self.after.cache)
        cache.crop(j - g)  # a negative count: the number of positions to drop (every transformers version)
        mask = self.after.attention_mask[:, : self.after.attention_mask.shape[1] - (g - j)]
        return HFState(cache, mask, self.before.next_position + j, self.logits[:, j - 1])


class HFCausalLM:
    """A Hugging Face causal language model behind the faithful model protocol.

    Prompts of different lengths are left-padded with an attention mask and
    position ids that skip the padding, exactly as ``generate`` does, and the KV
    cache makes each decoding step one token long. ``next_logprobs`` returns the
    exact float64 ``log_softmax`` of the model's logits.

    Args:
        model: a ``transformers`` causal LM (``AutoModelForCausalLM``), in eval mode.
        tokenizer: optional Hugging Face tokenizer, for text in/out (``self.tokenizer``).
        eos_token_id: the id that ends a sequence; default ``model.config.eos_token_id`` (first, if a list).
            Pass ``-1`` for none.
        pad_token_id: the id used for left padding and after EOS; default pad, else EOS, else 0.
        bos_token_id: when given, an empty prompt becomes ``[bos_token_id]``; otherwise empty prompts
            raise :class:`EmptyPromptError`.

    Raises:
        VocabMismatchError: when the tokenizer has more ids than the model's output layer.

    Example::

        >>> import torch, transformers
        >>> torch.manual_seed(0) and None
        >>> cfg = transformers.GPT2Config(n_layer=2, n_embd=64, n_head=2, vocab_size=50, bos_token_id=0, eos_token_id=0)
        >>> lm = HFCausalLM(transformers.GPT2LMHeadModel(cfg).eval())
        >>> lm.next_logprobs(lm.start([[1, 2], [3]])).shape
        (2, 50)
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any = None,
        *,
        eos_token_id: int | None = None,
        pad_token_id: int | None = None,
        bos_token_id: int | None = None,
    ) -> None:
        self.torch = _torch()
        self.model = model
        out = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
        size = getattr(out, "out_features", None) or getattr(model.config, "vocab_size", None)
        if size is None:
            raise ModelError(
                "cannot tell the vocabulary size of this model (no output embeddings/config.vocab_size)"
            )
        self.vocab_size = int(size)
        cfg_eos = getattr(model.config, "eos_token_id", None)
        if isinstance(cfg_eos, list | tuple):
            cfg_eos = cfg_eos[0] if cfg_eos else None
        eos = cfg_eos if eos_token_id is None else (None if eos_token_id < 0 else eos_token_id)
        if eos is not None and not 0 <= int(eos) < self.vocab_size:
            source = "eos_token_id" if eos_token_id is not None else "model.config.eos_token_id"
            raise ModelError(
                f"{source}={eos} is outside the vocabulary 0..{self.vocab_size - 1}; "
                "pass eos_token_id= a valid id, or -1 for no EOS"
            )
        self.eos_token_id: int | None = None if eos is None else int(eos)
        cfg_pad = getattr(model.config, "pad_token_id", None)
        if pad_token_id is not None:
            self.pad_token_id = int(pad_token_id)
        elif cfg_pad is not None:
            self.pad_token_id = int(cfg_pad)
        else:
            self.pad_token_id = self.eos_token_id if self.eos_token_id is not None else 0
        self.bos_token_id = bos_token_id
        self.tokenizer: HFTokenizer | None = None
        if tokenizer is not None:
            self.tokenizer = tokenizer if isinstance(tokenizer, HFTokenizer) else HFTokenizer(tokenizer)
            if self.tokenizer.vocab_size > self.vocab_size:
                raise VocabMismatchError(
                    f"the tokenizer has {self.tokenizer.vocab_size} ids but the model only {self.vocab_size}; "
                    "load the tokenizer that belongs to this model"
                )
        ctx = getattr(model.config, "max_position_embeddings", None) or getattr(
            model.config, "n_positions", None
        )
        self.max_positions: int | None = int(ctx) if ctx else None
        # transformers renamed `past_key_values` to `cache`; speak whichever this version understands
        params = inspect.signature(model.forward).parameters
        self._cache_arg = "cache" if "cache" in params else "past_key_values"
        self._keep_arg = "logits_to_keep" in params
        param = next(iter(model.parameters()), None)
        self.device = param.device if param is not None else self.torch.device("cpu")

    def _forward(
        self, input_ids: Any, attention_mask: Any, position_ids: Any, cache: Any, keep: int = 1
    ) -> tuple[Any, Any]:
        """Logits of the last ``keep`` positions (``(B, V)`` when ``keep == 1``, else ``(B, keep, V)``), new cache."""
        kwargs = {self._cache_arg: cache}
        if self._keep_arg:
            kwargs["logits_to_keep"] = keep
        out = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            use_cache=True,
            **kwargs,
        )
        new_cache = getattr(out, "cache", None)
        if new_cache is None:
            new_cache = out.past_key_values
        logits = out.logits[:, -1, :] if keep == 1 else out.logits[:, -keep:, :]
        return logits, new_cache

    def start(self, prompts: Sequence[Sequence[int]]) -> HFState:
        """Run the (left-padded) prompts through the model once and keep the cache.

        Raises:
            EmptyPromptError: on an empty prompt when no ``bos_token_id`` was given.
            VocabMismatchError: on a token id outside the model's vocabulary.
        """
        torch = self.torch
        rows = as_prompts(prompts, self.vocab_size)
        for i, r in enumerate(rows):
            if not r:
                if self.bos_token_id is None:
                    raise EmptyPromptError(
                        f"prompt {i} is empty; a causal LM needs at least one token to condition on "
                        "(pass bos_token_id= to start empty prompts from a BOS token)"
                    )
                rows[i] = [self.bos_token_id]
        width = max(len(r) for r in rows)
        if self.max_positions is not None and width > self.max_positions:
            raise ModelError(
                f"a prompt has {width} tokens but the model's context holds {self.max_positions}; shorten it"
            )
        ids = np.full((len(rows), width), self.pad_token_id, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for i, r in enumerate(rows):
            ids[i, width - len(r) :] = r
            mask[i, width - len(r) :] = 1
        input_ids = torch.from_numpy(ids).to(self.device)
        attention_mask = torch.from_numpy(mask).to(self.device)
        position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
        with torch.inference_mode():
            logits, cache = self._forward(input_ids, attention_mask, position_ids, None)
        lengths = torch.tensor([len(r) for r in rows], device=self.device)
        return HFState(cache, attention_mask, lengths, logits)

    def next_logits(self, state: HFState) -> Any:
        """Return the model's ``(B, V)`` next-token logits: the torch tensor it computed, in its dtype.

        No copy and no cast unless rows were selected since the last forward (then only
        the selected rows are gathered). Token samplers read it in place.
        """
        if state.logits_rows is None:
            return state.logits
        with self.torch.inference_mode():
            return state.logits[state.logits_rows]

    def next_logprobs(self, state: HFState) -> FloatArray:
        """Return ``(B, V)`` float64 ``log_softmax`` of the logits."""
        torch = self.torch
        with torch.inference_mode():
            logits = self.next_logits(state)
            lp = torch.log_softmax(logits, dim=-1, dtype=torch.float64)
        out: FloatArray = lp.cpu().numpy()
        return out

    def advance(self, state: HFState, tokens: IntArray) -> HFState:
        """Feed one token per row through the model, extending the KV cache."""
        torch = self.torch
        toks = as_index_array(tokens, self.vocab_size)
        b = state.attention_mask.shape[0]
        if toks.shape[0] != b:
            raise ModelError(f"expected {b} tokens (one per row), got {toks.shape[0]}")
        if self.max_positions is not None and int(state.next_position.max()) >= self.max_positions:
            raise ModelError(
                f"the model's context of {self.max_positions} positions is full; lower max_new_tokens "
                "or shorten the prompt"
            )
        input_ids = torch.from_numpy(toks).to(self.device)[:, None]
        mask = torch.cat([state.attention_mask, state.attention_mask.new_ones((b, 1))], dim=1)
        with torch.inference_mode():
            logits, cache = self._forward(
                input_ids, mask, state.next_position[:, None], _fork_cache(state.cache)
            )
        return HFState(cache, mask, state.next_position + 1, logits)

    def score_block(self, state: HFState, tokens: IntArray) -> HFBlock:
        """Feed ``g`` tokens per row (int64 ``(B, g)``) in ONE forward pass over the KV cache.

        The logits after each token are the ones ``g`` calls of :meth:`advance` compute, up to
        float rounding: the same weights, positions, mask and cached keys, only the matrix
        products see ``g`` query rows at once (float32: a few 1e-6 apart; the tests check < 1e-5).
        :meth:`HFBlock.state` crops the cache to a prefix of the block without another pass.

        Raises:
            ModelError: a block of the wrong shape, or one that runs past the model's context.
            VocabMismatchError: a token outside the vocabulary.
        """
        torch = self.torch
        b = state.attention_mask.shape[0]
        toks = check_block(tokens, b, self.vocab_size)
        g = toks.shape[1]
        if self.max_positions is not None and int(state.next_position.max()) + g > self.max_positions:
            raise ModelError(
                f"the model's context of {self.max_positions} positions cannot take {g} more tokens; "
                "lower max_new_tokens (or gamma) or shorten the prompt"
            )
        input_ids = torch.from_numpy(np.ascontiguousarray(toks)).to(self.device)
        mask = torch.cat([state.attention_mask, state.attention_mask.new_ones((b, g))], dim=1)
        steps = torch.arange(g, device=self.device)
        with torch.inference_mode():
            positions = state.next_position[:, None] + steps[None, :]
            logits, cache = self._forward(input_ids, mask, positions, _fork_cache(state.cache), keep=g)
            if g == 1:
                logits = logits[:, None, :]
        after = HFState(cache, mask, state.next_position + g, logits[:, -1])
        return HFBlock(self, state, toks, logits, after)

    def concat_states(self, states: Sequence[HFState]) -> HFState | None:
        """One state holding the rows of ``states`` in order, or None when their caches cannot be joined.

        Shorter caches are left-padded with masked positions, as :meth:`start` pads short prompts:
        a masked key gets attention weight 0, so each row's logits stay its own up to float rounding.
        """
        torch = self.torch
        if not states or not all(_plain_layers(s.cache) for s in states):
            return None
        if len({len(s.cache.layers) for s in states}) != 1:
            return None
        width = max(int(s.attention_mask.shape[1]) for s in states)
        with torch.inference_mode():
            masks, logits = [], []
            for s in states:
                pad = width - int(s.attention_mask.shape[1])
                masks.append(torch.nn.functional.pad(s.attention_mask, (pad, 0)))
                logits.append(self.next_logits(s))
            cache = _fork_cache(states[0].cache)
            for i, layer in enumerate(cache.layers):
                keys, values = [], []
                for s in states:
                    src = s.cache.layers[i]
                    if (
                        not getattr(src, "is_initialized", True)
                        or src.keys.shape[-2] != s.attention_mask.shape[1]
                    ):
                        return None  # a layer that does not hold every position: leave it to a restart
                    pad = width - int(src.keys.shape[-2])
                    keys.append(torch.nn.functional.pad(src.keys, (0, 0, pad, 0)))
                    values.append(torch.nn.functional.pad(src.values, (0, 0, pad, 0)))
                layer.keys, layer.values = torch.cat(keys), torch.cat(values)
            return HFState(
                cache,
                torch.cat(masks),
                torch.cat([s.next_position for s in states]),
                torch.cat(logits),
            )

    def select(self, state: HFState, indices: IntArray) -> HFState:
        """Reorder/repeat rows (beam reordering and expansion), cache included."""
        torch = self.torch
        idx = torch.from_numpy(as_index_array(indices, state.attention_mask.shape[0])).to(self.device)
        cache = _fork_cache(state.cache)
        with torch.inference_mode():
            if hasattr(cache, "layers"):
                for layer in cache.layers:
                    layer.reorder_cache(idx)
            else:
                cache.reorder_cache(idx)
            rows = idx if state.logits_rows is None else state.logits_rows[idx]
            return HFState(cache, state.attention_mask[idx], state.next_position[idx], state.logits, rows)


def load_hf_model(
    path: str,
    *,
    device: str = "cpu",
    dtype: str | None = None,
    eos_token_id: int | None = None,
    bos_token_id: int | None = None,
) -> HFCausalLM:
    """Load a causal LM (and its tokenizer, when the folder has one) from a local path or hub id.

    Args:
        path: what ``AutoModelForCausalLM.from_pretrained`` accepts.
        device: torch device string.
        dtype: ``"float32"``, ``"bfloat16"``, ... or None for the checkpoint's.
        eos_token_id, bos_token_id: as in :class:`HFCausalLM`.

    Returns:
        An :class:`HFCausalLM` in eval mode.

    Raises:
        ModelError: when torch/transformers are missing or the model cannot be loaded.
        VocabMismatchError: when the tokenizer does not fit the model.

    Example::

        lm = load_hf_model("./my-tiny-gpt2")
        generate_text(lm, "Hello", decoder="beam:4", max_new_tokens=20)
    """
    torch = _torch()
    try:
        import transformers
    except ImportError:  # pragma: no cover
        raise ModelError("load_hf_model needs transformers: pip install transformers") from None
    kwargs: dict[str, Any] = {}
    if dtype is not None:
        kwargs["dtype"] = getattr(torch, dtype)
    try:
        model: Any = transformers.AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot load a causal LM from {path!r}: {exc}") from exc
    model = model.to(device).eval()
    tokenizer: Any = None
    # a local folder without tokenizer files would otherwise get an empty default tokenizer
    has_files = not os.path.isdir(path) or any(
        os.path.exists(os.path.join(path, name)) for name in _TOKENIZER_FILES
    )
    if has_files:
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(path)
        except (OSError, ValueError, TypeError):
            tokenizer = None
    return HFCausalLM(model, tokenizer, eos_token_id=eos_token_id, bos_token_id=bos_token_id)
