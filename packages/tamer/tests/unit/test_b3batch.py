"""The backup tap's own BLAKE3 (tamer/_b3batch.c: many inputs side by side in SIMD lanes, with the vendored
C BLAKE3) against the blake3 package, on every length across the chunk and tree edges and on random batches.

Every file of a backup is hashed by it: a wrong digest would make every restore of that archive fail its
checks. test_backup_tap.py checks the same through whole archives.
"""

from __future__ import annotations

import os
import random

import pytest

blake3 = pytest.importorskip("blake3")
ctap = pytest.importorskip("tamer._ctap", reason="tamer._ctap was not built here (no C compiler at install)")

BATCH_MAX = 64 * 1024  # _b3batch.h: batched up to here, streamed past it
DATA = os.urandom(BATCH_MAX + 5000)


def oracle(inputs: list[bytes]) -> list[str]:
    return [blake3.blake3(x).hexdigest() for x in inputs]


def test_every_length_up_to_9_chunks_and_around_each_tree_edge() -> None:
    lengths = list(range(0, 9 * 1024 + 2))
    for chunks in (15, 16, 17, 31, 32, 33, 63, 64, 65):  # subtree sizes around powers of two, and the limit
        lengths += [chunks * 1024 + d for d in (-65, -64, -1, 0, 1, 64) if chunks * 1024 + d <= len(DATA)]
    inputs = [DATA[n % 13 : n % 13 + n] for n in lengths]  # different offsets: no alignment assumed
    assert ctap.blake3_hexdigests(inputs) == oracle(inputs)


@pytest.mark.parametrize("seed", range(20))
def test_random_batches_mixing_small_large_and_empty(seed: int) -> None:
    rng = random.Random(seed)
    edges = [0, 1, 63, 64, 65, 1023, 1024, 1025, 2048, BATCH_MAX - 1, BATCH_MAX, BATCH_MAX + 1]
    inputs = [
        DATA[: rng.choice(edges) if rng.random() < 0.5 else rng.randrange(len(DATA))]
        for _ in range(rng.randrange(0, 200))
    ]
    assert ctap.blake3_hexdigests(inputs) == oracle(inputs)


def test_bytes_like_inputs_and_a_bad_argument() -> None:
    x = b"abc" * 1000
    assert ctap.blake3_hexdigests([bytearray(x), memoryview(x)[1:]]) == oracle([x, x[1:]])
    assert ctap.blake3_hexdigests([]) == []
    with pytest.raises(TypeError):
        ctap.blake3_hexdigests([x, "not bytes"])
    with pytest.raises(TypeError):
        ctap.blake3_hexdigests(5)
