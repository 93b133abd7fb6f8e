"""Decode a comparison's outputs over worker processes or a Ray cluster, sharded by row index.

Every sampling decoder keys its randomness by ``(seed, row, step)``, with ``row = b * c + j`` for
prompt ``b`` of the batch and its ``c`` rows (``sample:K``: ``c = K``; ``mbr:N``: ``N``;
``stochastic-beam:K``: ``K + 1``). A shard decodes prompts ``[lo, hi)`` as a batch of its own and
reads its uniforms through :class:`RowOffset`, which adds ``lo * c`` to every row id, so each
shard draws exactly the uniforms the single-process run draws for those rows. Merged in row
order, the outputs, and so every count and statistic computed from them, are bit-identical to
the single-process run for the same seed (for a model whose rows do not depend on the batch:
n-gram and HMM models; a neural model's float kernels may round differently at another batch
size). ``c`` is read from the decoder itself (:func:`rows_per_prompt`): a two-prompt, one-token
probe that records the row ids the decoder asks for.

Workers are processes started with ``forkserver`` (``spawn`` where there is none): forking a
process that holds torch state is unsafe. Each loads the model once, from its spec when there
is one (``load_model``), else from a pickled copy. With Ray (``pip install 'faithful[ray]'``),
the same shards go to Ray actors on the cluster at ``address`` (or a local one started for the
run, or the one this process already joined).
"""

from __future__ import annotations

import itertools
import logging
import math
import multiprocessing
import secrets
import socket
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from faithful.errors import FaithfulError
from faithful.fidelity.specs import DecoderChoice, decode_outputs
from faithful.models.base import LanguageModel
from faithful.rng import KeyedRNG

__all__ = ["ParallelError", "RowOffset", "Runner", "rows_per_prompt"]

Key = tuple[int, ...]
Progress = Callable[[int, int], None]
"""``progress(rows_done, rows_total)``, called as shards finish."""

# shards per worker: finer progress and load balance, at a small cost per shard
_SHARDS_PER_WORKER = 4
_MIN_SHARD = 16


class ParallelError(FaithfulError):
    """Workers could not be started or used (Ray missing, a bad address, a decoder that breaks sharding)."""


class RowOffset:
    """Keyed uniforms whose row ``r`` is row ``r + offset`` of ``KeyedRNG(seed)``; records the rows asked for.

    Example:
        >>> a = RowOffset(3, 10).uniforms([0, 1], step=2)
        >>> bool((a == KeyedRNG(3).uniforms([10, 11], step=2)).all())
        True
    """

    def __init__(self, seed: int, offset: int) -> None:
        self.rng = KeyedRNG(seed)
        self.seed = seed
        self.offset = int(offset)
        self.max_row = -1

    def uniforms(self, rows: Any, step: int, n: int = 1) -> np.ndarray:
        arr = np.asarray(rows, dtype=np.int64).reshape(-1)
        if arr.size:
            self.max_row = max(self.max_row, int(arr.max()))
        return self.rng.uniforms(arr + self.offset, step, n)


def rows_per_prompt(
    model: LanguageModel, choice: DecoderChoice, max_new_tokens: int, prompt: Sequence[int] = ()
) -> int:
    """How many keyed rows the decoder gives each prompt: the ``c`` of ``row = b * c + j``.

    Measured, not assumed: the decoder runs on two prompts with a recording uniform source, and
    ``c`` is half the rows it asked for.

    Raises:
        ParallelError: when the rows it asked for are not ``2 * c`` for a whole ``c``.
    """
    from faithful.decode import parse_decoder_spec
    from faithful.decode.generate import resolve_sampler

    probe = RowOffset(0, 0)
    run = parse_decoder_spec(choice.decoder)
    run(model, [list(prompt)] * 2, max_new_tokens, resolve_sampler(choice.sampler), probe)
    used = probe.max_row + 1
    if used < 2 or used % 2:
        raise ParallelError(
            f"cannot shard {choice.label!r}: its rows are not laid out per prompt (asked for {used} rows "
            "for 2 prompts); run it without --workers/--ray"
        )
    return used // 2


def _decode_shard(
    model: LanguageModel,
    choice: DecoderChoice,
    lo: int,
    hi: int,
    c: int,
    max_new_tokens: int,
    prompt: Key,
    seed: int,
) -> list[Key]:
    """Prompts ``lo .. hi-1`` of the full run, keyed as the full run keys them."""
    from faithful.decode import parse_decoder_spec
    from faithful.decode.generate import resolve_sampler

    source = RowOffset(seed, lo * c)
    run = parse_decoder_spec(choice.decoder)
    result = run(model, [list(prompt)] * (hi - lo), max_new_tokens, resolve_sampler(choice.sampler), source)
    if source.max_row >= (hi - lo) * c:
        raise ParallelError(
            f"{choice.label!r} asked for row {source.max_row} in a shard of {hi - lo} prompts x {c} rows; "
            "its rows are not laid out per prompt, so it cannot be sharded; run it without --workers/--ray"
        )
    return [tuple(int(t) for t in row) for row in result.best()]


# --- process workers: one model per process, loaded once --------------------------------------------

_WORKER_MODEL: LanguageModel | None = None


def _load(model: LanguageModel | str) -> LanguageModel:
    if isinstance(model, str):
        from faithful.fidelity.specs import load_model

        return load_model(model)
    return model


def _init_worker(model: LanguageModel | str) -> None:
    global _WORKER_MODEL
    _WORKER_MODEL = _load(model)


def _worker_shard(
    choice: DecoderChoice, lo: int, hi: int, c: int, max_new_tokens: int, prompt: Key, seed: int
) -> tuple[int, list[Key]]:
    assert _WORKER_MODEL is not None, "the worker's initializer loads the model"
    return lo, _decode_shard(_WORKER_MODEL, choice, lo, hi, c, max_new_tokens, prompt, seed)


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ParallelError(
            "--ray needs Ray, which is not installed here; install the extra: pip install 'faithful[ray]'"
        ) from None
    return ray


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Refuse a ``HOST:PORT`` (or ``ray://HOST:PORT``) nobody listens on, in seconds: Ray itself
    retries for minutes before it gives up. ``auto`` and other forms go to Ray as they are."""
    target = address.removeprefix("ray://")
    host, sep, port = target.rpartition(":")
    if not sep or not host or not port.isdigit():
        return
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise ParallelError(
            f"cannot reach a Ray cluster at {address!r} ({exc.strerror or exc}); start one with "
            "`ray start --head`, check the address, or use --ray without one for a local cluster"
        ) from None


@dataclass
class Runner:
    """Decodes ``n`` outputs of a decoder over workers; a drop-in for :func:`~faithful.fidelity.specs.decode_outputs`.

    The workers (processes, or Ray actors) start at the first parallel decode and serve every
    decode after it until :meth:`close` (or the end of a ``with`` block).

    Attributes:
        model: the model (used for the probe, and pickled to workers when there is no spec).
        model_spec: the ``--model`` spec workers load the model from (None: pickle ``model``).
        workers: processes, or Ray actors (None with Ray: one per CPU of the cluster, and never
            more than it has).
        ray_address: None for processes; ``""`` for Ray on a local cluster (or the one this process
            already joined); else the address of a running cluster (``"auto"``, ``"HOST:PORT"``,
            ``"ray://HOST:PORT"``).
        progress: called with (rows done, rows total) as shards finish.

    A script that uses process workers needs the ``if __name__ == "__main__":`` guard, as any
    program using ``multiprocessing`` with ``spawn``/``forkserver`` does.

    Example::

        with Runner(model, "pydoc-words", workers=2) as runner:
            outs = runner.decode_outputs(model, choice, 2000, 6, prompt=(), seed=0)
    """

    model: LanguageModel
    model_spec: str | None = None
    workers: int | None = 1
    ray_address: str | None = None
    progress: Progress | None = None
    _pool: ProcessPoolExecutor | None = field(default=None, init=False, repr=False)
    _actors: list[Any] | None = field(default=None, init=False, repr=False)
    _ray_started: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        w = self.workers
        if w is not None and (isinstance(w, bool) or not isinstance(w, int) or w < 1):
            raise ParallelError(f"workers must be an integer >= 1, got {w!r}")
        if self.ray_address is not None:
            _ray()  # a missing Ray, or nobody at the address, is said before any work
            if self.ray_address:
                _check_reachable(self.ray_address)

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def parallel(self) -> bool:
        """Whether decoding leaves this process."""
        return self.ray_address is not None or (self.workers or 1) > 1

    def close(self) -> None:
        """Stop the workers (and a Ray cluster this runner started); a later decode starts them again."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        if self._actors is not None:
            ray = _ray()
            for a in self._actors:
                ray.kill(a)
            self._actors = None
        if self._ray_started:
            _ray().shutdown()
            self._ray_started = False

    def decode_outputs(
        self,
        model: LanguageModel,
        choice: DecoderChoice,
        n: int,
        max_new_tokens: int,
        *,
        prompt: Sequence[int] = (),
        seed: int | None = 0,
    ) -> list[Key]:
        """The ``n`` outputs :func:`~faithful.fidelity.specs.decode_outputs` gives, decoded by the workers.

        A ``seed`` of None is drawn here once, so every shard uses the same one.

        Raises:
            ParallelError: Ray missing or unreachable, a worker failing, a decoder that cannot be sharded.
        """
        if not self.parallel or choice.deterministic:
            outs = decode_outputs(model, choice, n, max_new_tokens, prompt=prompt, seed=seed)
            if self.progress is not None:
                self.progress(n, n)
            return outs
        if n < 1:
            raise FaithfulError(f"the number of outputs must be >= 1, got {n}")
        the_seed = secrets.randbits(63) if seed is None else int(seed)
        c = rows_per_prompt(model, choice, max_new_tokens, prompt)
        key = tuple(int(t) for t in prompt)
        shards = (choice, c, max_new_tokens, key, the_seed)
        if self.ray_address is not None:
            return self._merge(n, self._ray_shards(n, *shards))
        return self._merge(n, self._process_shards(n, *shards))

    def _source(self) -> LanguageModel | str:
        return self.model_spec if self.model_spec is not None else self.model

    def _bounds(self, n: int, workers: int) -> list[tuple[int, int]]:
        shards = max(1, min(workers * _SHARDS_PER_WORKER, math.ceil(n / _MIN_SHARD)))
        edges = np.linspace(0, n, shards + 1).round().astype(int)
        return [(int(a), int(b)) for a, b in itertools.pairwise(edges.tolist()) if b > a]

    def _merge(self, n: int, done: Iterator[tuple[int, list[Key]]]) -> list[Key]:
        parts: dict[int, list[Key]] = {}
        rows = 0
        for lo, outs in done:
            parts[lo] = outs
            rows += len(outs)
            if self.progress is not None:
                self.progress(rows, n)
        merged = [o for lo in sorted(parts) for o in parts[lo]]
        assert len(merged) == n, "every row decoded once"
        return merged

    def _process_shards(
        self, n: int, choice: DecoderChoice, c: int, max_new_tokens: int, prompt: Key, seed: int
    ) -> Iterator[tuple[int, list[Key]]]:
        workers = int(self.workers or 1)
        if self._pool is None:
            methods = multiprocessing.get_all_start_methods()
            ctx = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
            self._pool = ProcessPoolExecutor(
                workers, mp_context=ctx, initializer=_init_worker, initargs=(self._source(),)
            )
        futures = [
            self._pool.submit(_worker_shard, choice, lo, hi, c, max_new_tokens, prompt, seed)
            for lo, hi in self._bounds(n, workers)
        ]
        try:
            for fut in as_completed(futures):
                yield fut.result()
        except FaithfulError:
            raise
        except BrokenProcessPool:
            self.close()
            raise ParallelError(
                "a worker process died (killed, or out of memory); nothing was merged: rerun, "
                "perhaps with fewer --workers"
            ) from None
        except Exception as exc:  # a worker that could not load the model, or a decoder's error
            self.close()
            raise ParallelError(f"a worker failed: {type(exc).__name__}: {exc}") from exc
        finally:
            for fut in futures:
                fut.cancel()

    def _ray_actors(self) -> list[Any]:
        ray = _ray()
        if self._actors is not None:
            return self._actors
        if not ray.is_initialized():
            try:
                quiet = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.ERROR}
                if self.ray_address:
                    ray.init(address=self.ray_address, **quiet)
                else:
                    ray.init(num_cpus=self.workers, **quiet)
            except Exception as exc:
                where = f"the cluster at {self.ray_address!r}" if self.ray_address else "a local cluster"
                raise ParallelError(
                    f"cannot start or join Ray ({where}): {type(exc).__name__}: {exc}"
                ) from None
            self._ray_started = True
        # one CPU per actor: more actors than the cluster's CPUs would wait forever for a place
        cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        workers = min(self.workers or cpus, cpus)
        actor = ray.remote(num_cpus=1)(_RayShardWorker)
        self._actors = [actor.remote(self._source()) for _ in range(workers)]
        return self._actors

    def _ray_shards(
        self, n: int, choice: DecoderChoice, c: int, max_new_tokens: int, prompt: Key, seed: int
    ) -> Iterator[tuple[int, list[Key]]]:
        ray = _ray()
        actors = self._ray_actors()
        pending = {
            actors[i % len(actors)].decode.remote(choice, lo, hi, c, max_new_tokens, prompt, seed): lo
            for i, (lo, hi) in enumerate(self._bounds(n, len(actors)))
        }
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                del pending[ref]
                try:
                    yield ray.get(ref)
                except Exception as exc:
                    raise ParallelError(f"a Ray worker failed: {type(exc).__name__}: {exc}") from None


class _RayShardWorker:
    """A Ray actor holding one model (loaded once) and decoding shards with it."""

    def __init__(self, model: LanguageModel | str) -> None:
        self.model = _load(model)

    def decode(
        self, choice: DecoderChoice, lo: int, hi: int, c: int, max_new_tokens: int, prompt: Key, seed: int
    ) -> tuple[int, list[Key]]:
        return lo, _decode_shard(self.model, choice, lo, hi, c, max_new_tokens, prompt, seed)
