"""faithful's sampling inside vLLM: a custom logits processor that makes vLLM take faithful's keyed draw.

vLLM (V1 engine) loads custom logits processors at start-up: subclasses of
``vllm.v1.sample.logits_processor.LogitsProcessor`` named on the command line or found in
the ``vllm.logits_processors`` entry-point group, which faithful's package declares. A
request opts in through its extra arguments (``SamplingParams.extra_args``, ``vllm_xargs``
over HTTP)::

    vllm serve Qwen/Qwen2.5-1.5B-Instruct --logits-processors faithful.vllm_plugin:FaithfulLogitsProcessor

    curl localhost:8000/v1/completions -H 'Content-Type: application/json' -d '{
      "model": "Qwen/Qwen2.5-1.5B-Instruct", "prompt": "Once upon", "max_tokens": 32, "seed": 7,
      "vllm_xargs": {"faithful": "temperature:0.8+top-p:0.95"}}'

For each opted-in request the processor runs faithful's processor chain and keyed draw
(:mod:`faithful.torch_backend`, on the logits' device) and *forces* the chosen token: the
request's logits row becomes ``0`` at faithful's token and ``-inf`` elsewhere.

Where it sits in vLLM's sampler (``Sampler.apply_logits_processors`` then ``Sampler.sample``):
vLLM's ``allowed_token_ids`` and bad words, then its built-in ``min_tokens`` and
``logit_bias`` processors (built-ins come first in the non-argmax-invariant list), act
*before* faithful, so faithful's q is over the logits they leave; vLLM's penalties,
temperature, min-p, top-k/top-p and its greedy or random draw act *after*, on the forced
row: ``-inf`` stays ``-inf`` under every one of them and the single finite logit is the
maximum, so they can only take faithful's token. This holds for any ``SamplingParams``
temperature, greedy (``temperature=0``) included: non-argmax-invariant processors run for
greedy requests too, and greedy takes the argmax of the forced row. Put the sampling
settings in the faithful spec and leave vLLM's at their defaults (they would only cost time);
vLLM's ``min_tokens`` / ``logit_bias`` / ``allowed_token_ids`` change the logits faithful
samples from (its ``forbidden-tokens`` / ``logit-bias`` say the same inside the spec).

Keys: the uniforms of a request's step ``t`` (its ``t``-th generated token) are
``KeyedRNG(seed).uniforms([row], t, ...)``, with ``seed`` the request's ``faithful_seed``
extra argument or else its ``SamplingParams.seed`` (vLLM gives the ``k``-th of ``n``
parallel samples ``seed + k``: ``ParentRequest._get_child_sampling_params``), and ``row``
its ``faithful_row`` extra argument (default 0): the same keys as faithful's own
:func:`~faithful.decode.ancestral_sample` row ``row`` with ``rng=seed``. The history of
penalties and DRY is the prompt (when vLLM passes it) and the tokens generated so far.

Output token ids under asynchronous scheduling (vLLM's default in recent releases): vLLM
appends ``-1`` placeholders to a request's output list and replaces them with the sampled
ids only when something asked for them: its own penalties, bad words, a processor whose
``needs_output_token_ids()`` is True (this one's is, for vLLM releases that ask), or, on
releases before that method, any processor named with ``--logits-processors`` (one found
only through the entry point does not count). The step ``t`` is the list's length, right
either way; a spec that reads the history (penalties, DRY, no-repeat-ngram) meeting a
placeholder is not forced (the row is left to vLLM, and a warning names the fix) rather
than sampled from a wrong history.

Known limits (vLLM's, read in its code): vLLM refuses custom logits processors when
speculative decoding is on; its logits are batch-invariant only in its batch-invariant mode
(``VLLM_BATCH_INVARIANT=1``), so without it a row's logits, and so rarely its token, can
move with the batch; the log-probabilities vLLM reports are of its raw logits by default
(``--logprobs-mode raw_logprobs``), i.e. the model's, not faithful's processed q (the
``processed_*`` modes would report the forced one-hot). vLLM's "V2" model runner has its
own processor interface and *refuses at start-up* every V1-interface processor of the
entry-point group: where it is on, run vLLM with ``VLLM_USE_V2_MODEL_RUNNER=0`` (with
faithful installed, vLLM does not start otherwise). When faithful is installed *and* named
with ``--logits-processors``, vLLM loads two instances; the second sees the forced one-hot
row and keeps its token (one more pass, same tokens). A mirostat request's state starts
again if vLLM preempts and later resumes it.

Checked against vLLM's source (vllm-project/vllm): ``vllm/v1/sample/logits_processor/
interface.py`` (BatchUpdate, MoveDirectionality, LogitsProcessor with
``needs_output_token_ids``), ``builtin.py`` (``process_dict_updates``), ``state.py``
(``BatchUpdateBuilder``: removed indices sorted descending, an added request takes a
removed index), ``__init__.py`` (``build_logitsprocs``: built-ins, then entry-point
plugins, then ``--logits-processors``), ``vllm/v1/worker/gpu_input_batch.py``
(``update_async_output_token_ids``), ``vllm/v1/worker/gpu/sample/logitsprocs.py`` (the V2
runner's adapter: no moves, a request whose row changed is re-added) and
``vllm/v1/worker/gpu/sample/logits_processor/loader.py`` (the V2 loader's refusal). No vLLM
was installed here: the tests drive :class:`FaithfulRequests` with stand-ins that mirror
``BatchUpdate`` field for field.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from faithful.errors import FaithfulError
from faithful.rng import KeyedRNG
from faithful.samplers import Sampler, parse_sampler_spec

__all__ = ["EXTRA_ROW", "EXTRA_SEED", "EXTRA_SPEC", "FaithfulRequests", "RequestPlan", "request_plan"]

_log = logging.getLogger(__name__)

EXTRA_SPEC = "faithful"  # the sampler spec, e.g. "temperature:0.8+top-p:0.95"
EXTRA_SEED = "faithful_seed"  # optional: the seed (else SamplingParams.seed)
EXTRA_ROW = "faithful_row"  # optional: the row id of the keys (default 0)


@dataclass
class RequestPlan:
    """One opted-in request: its sampler, keys and (live) token lists."""

    spec: str
    sampler: Sampler
    seed: int
    row: int
    prompt: Sequence[int] | None
    output: Sequence[int]  # vLLM's running list of the request's generated tokens (a live reference)
    params: Any = None  # the SamplingParams it came from (to know the request again when re-added)

    @property
    def reads_history(self) -> bool:
        return any(proc.needs_history for proc in self.sampler.processors)


def _int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"vllm_xargs `{name}` must be an int, got {value!r}")
    return int(value)


def request_plan(
    params: Any, prompt: Sequence[int] | None = None, output: Sequence[int] = ()
) -> RequestPlan | None:
    """The plan of a request from its ``SamplingParams`` (None when it did not opt in).

    Raises:
        ValueError: a bad spec, seed or row (vLLM's contract: the request is refused with the message).

    Example:
        >>> class Params:
        ...     extra_args = {"faithful": "top-k:5", "faithful_seed": 3}
        ...     seed = None
        ...     n = 1
        >>> request_plan(Params()).sampler.name
        'top-k:5'
    """
    extra = getattr(params, "extra_args", None) or {}
    if EXTRA_SPEC not in extra:
        if EXTRA_SEED in extra or EXTRA_ROW in extra:
            raise ValueError(
                f"vllm_xargs `{EXTRA_SEED}`/`{EXTRA_ROW}` need `{EXTRA_SPEC}` (the sampler spec)"
            )
        return None
    spec = extra[EXTRA_SPEC]
    if not isinstance(spec, str):
        raise ValueError(f"vllm_xargs `{EXTRA_SPEC}` must be a sampler spec string, got {spec!r}")
    try:
        sampler = parse_sampler_spec(spec, backend="torch")
    except FaithfulError as exc:
        raise ValueError(f"vllm_xargs `{EXTRA_SPEC}`: {exc}") from None
    if EXTRA_SEED in extra:
        seed = _int(EXTRA_SEED, extra[EXTRA_SEED])
        if (getattr(params, "n", 1) or 1) > 1:
            raise ValueError(
                f"vllm_xargs `{EXTRA_SEED}` with n > 1 would give every sample the same keys; "
                "pass the request's `seed` instead (vLLM gives the k-th sample seed + k)"
            )
    elif getattr(params, "seed", None) is not None:
        seed = _int("seed", params.seed)
    else:
        raise ValueError(
            f"faithful draws keyed, reproducible tokens: give the request a `seed` (or vllm_xargs `{EXTRA_SEED}`)"
        )
    row = _int(EXTRA_ROW, extra.get(EXTRA_ROW, 0))
    KeyedRNG(seed)  # validates the seed's range
    return RequestPlan(spec, sampler, seed, row, prompt, output, params)


class _RequestKeys:
    """Uniform source for a group of requests: position ``p`` of the group is keyed by its request's
    own ``(seed, row, step)``; the ``step`` argument of the sampler is ignored."""

    def __init__(self, plans: Sequence[RequestPlan]) -> None:
        self.plans = plans

    def uniforms(self, rows: Any, step: int, n: int = 1) -> np.ndarray:
        """On the host (numpy), for positions ``rows`` of the group."""
        out = np.empty((len(rows), n), dtype=np.float64)
        for i, p in enumerate(np.asarray(rows).tolist()):
            plan = self.plans[p]
            out[i] = KeyedRNG(plan.seed).uniforms([plan.row], len(plan.output), n)[0]
        return out

    def device_uniforms(self, rows: Any, step: int, n: int = 1) -> Any:
        """The same bits computed on ``rows``' device: only the per-request key scalars come from the host.

        ``rows`` are the group's positions ``0..len-1`` in order (what the plugin passes), so the
        per-request seeds, rows and steps are laid out on the host without reading ``rows`` back.
        """
        import torch

        from faithful.torch_backend.processors import host_to_device
        from faithful.torch_rng import _GOLDEN, _splitmix64_int, bits_to_uniform, splitmix64, to_int64

        mask = (1 << 64) - 1
        seed_hash = [to_int64(_splitmix64_int((p.seed + 0x9E3779B97F4A7C15) & mask)) for p in self.plans]
        step_key = [to_int64((len(p.output) + 0x9E3779B97F4A7C15) & mask) for p in self.plans]
        key_rows = [to_int64(p.row) for p in self.plans]
        device = rows.device

        def as_tensor(xs: list[int]) -> Any:
            return host_to_device(np.asarray(xs, dtype=np.int64), device)

        h = splitmix64((as_tensor(key_rows) + _GOLDEN) ^ as_tensor(seed_hash))
        keys = splitmix64(h ^ as_tensor(step_key))
        lanes = torch.arange(int(n), dtype=torch.int64, device=device) + _GOLDEN
        return bits_to_uniform(splitmix64(keys[:, None] ^ lanes[None, :]))


class FaithfulRequests:
    """The per-request logic of the vLLM processor: track the batch, draw, force the chosen tokens.

    ``update(batch_update)`` follows vLLM's ``BatchUpdate`` (removed, then added, then moved;
    an added or moved request replaces whatever held its index); ``apply(logits)`` draws for
    every opted-in row and returns the logits with those rows forced.
    """

    def __init__(self) -> None:
        self.slots: dict[int, RequestPlan] = {}
        self.unforced: list[int] = []  # indices left to vLLM at the last apply (placeholder history)
        self._warned = False

    def update(self, batch_update: Any) -> None:
        if batch_update is None:
            return
        # a request vLLM takes out and adds again in the same update (its V2 runner re-adds a
        # request whose row changed) keeps its plan: its mirostat state goes with it
        displaced: list[RequestPlan] = []
        for index in batch_update.removed:
            if (plan := self.slots.pop(index, None)) is not None:
                displaced.append(plan)
        for index, params, prompt, output in batch_update.added:
            if (old := self.slots.pop(index, None)) is not None:
                displaced.append(old)
            again = next((p for p in displaced if p.output is output and p.params is params), None)
            plan = again if again is not None else request_plan(params, prompt, output)
            if plan is not None:
                self.slots[index] = plan
        for a, b, direction in batch_update.moved:
            plan_a = self.slots.pop(a, None)
            plan_b = self.slots.pop(b, None)
            if plan_a is not None:
                self.slots[b] = plan_a
            if getattr(direction, "name", str(direction)) == "SWAP" and plan_b is not None:
                self.slots[a] = plan_b

    def _history_known(self, index: int, plan: RequestPlan) -> bool:
        """False when vLLM's output list still holds an asynchronous-scheduling placeholder (-1)."""
        if not plan.reads_history or not any(t < 0 for t in plan.output):
            return True
        self.unforced.append(index)
        if not self._warned:
            self._warned = True
            _log.warning(
                "faithful: request at batch index %d reads its history (%s) but vLLM passed "
                "placeholder token ids (-1, asynchronous scheduling): its token is left to vLLM. "
                "Name the processor with --logits-processors faithful.vllm_plugin:FaithfulLogitsProcessor "
                "or run vLLM with --no-async-scheduling.",
                index,
                plan.spec,
            )
        return False

    def apply(self, logits: Any) -> Any:
        """Force faithful's token in every opted-in row; other rows are returned unchanged."""
        self.unforced = []
        if not self.slots:
            return logits
        import torch

        from faithful.torch_backend import sample_tensor
        from faithful.torch_backend.processors import host_to_device

        groups: dict[str, list[int]] = {}
        for index, plan in sorted(self.slots.items()):
            if not self._history_known(index, plan):
                continue
            # requests of one spec share one call; a mirostat request keeps its own state
            key = plan.spec if plan.sampler.mirostat is None else f"{plan.spec}#{index}"
            groups.setdefault(key, []).append(index)
        for indices in groups.values():
            plans = [self.slots[i] for i in indices]
            idx = host_to_device(np.asarray(indices, dtype=np.int64), logits.device)
            z = logits.index_select(0, idx)
            history = (
                [list(p.prompt or ()) + list(p.output) for p in plans] if plans[0].reads_history else None
            )
            res = sample_tensor(
                plans[0].sampler,
                z,
                rng=_RequestKeys(plans),
                rows=np.arange(len(plans)),
                history=history,
                check=False,  # a bad row is left to vLLM instead of failing the engine step
            )
            good = res.status == 0
            forced = torch.full_like(z, float("-inf"))
            forced.scatter_(1, res.tokens[:, None], 0.0)
            logits[idx] = torch.where(good[:, None], forced, z)
        return logits


def _build_vllm_class() -> type:
    try:
        from vllm.v1.sample.logits_processor import LogitsProcessor
    except ImportError as exc:  # was the bare "No module named 'vllm'"
        raise ModuleNotFoundError(
            "faithful.vllm_plugin.FaithfulLogitsProcessor is a vLLM (V1 engine) logits processor and needs "
            f"vLLM, which is not importable here ({type(exc).__name__}: {exc}); install vLLM to serve with it "
            "(vllm serve MODEL --logits-processors faithful.vllm_plugin:FaithfulLogitsProcessor), or sample "
            "without vLLM through faithful.hf or make_sampler(..., backend='torch')",
            name="vllm",
        ) from exc

    class FaithfulLogitsProcessor(LogitsProcessor):  # type: ignore[misc,unused-ignore]  # vllm untyped (strict only)
        """vLLM logits processor: faithful's processors and keyed draw for requests with ``vllm_xargs.faithful``."""

        @classmethod
        def validate_params(cls, sampling_params: Any) -> None:
            request_plan(sampling_params)

        def __init__(self, vllm_config: Any, device: Any, is_pin_memory: bool) -> None:
            self.requests = FaithfulRequests()

        def is_argmax_invariant(self) -> bool:
            return False  # it picks the token: it must run for greedy requests too

        def needs_output_token_ids(self) -> bool:
            # penalties and DRY read the generated ids: without this, vLLM's asynchronous
            # scheduling may leave -1 placeholders in the output lists (releases that ask)
            return True

        def update_state(self, batch_update: Any) -> None:
            self.requests.update(batch_update)

        def apply(self, logits: Any) -> Any:
            return self.requests.apply(logits)

    FaithfulLogitsProcessor.__module__ = __name__
    return FaithfulLogitsProcessor


def __getattr__(name: str) -> Any:
    if name == "FaithfulLogitsProcessor":  # built on first access: importing this module never imports vLLM
        cls = _build_vllm_class()
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
