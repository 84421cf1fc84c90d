"""Batching of unpadded sequences: padding, length-sorted and length-bucketed batches. One home
for what the teacher, the transfer build, the reader, the students and inference
(xdray.data.windows) all do."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch


def pad_batch(sequences: Sequence[np.ndarray], pad_value: int) -> torch.Tensor:
    """Right-pad 1-D arrays to the longest: (B, T)."""
    out = np.full((len(sequences), max(len(s) for s in sequences)), pad_value, dtype=np.int64)
    for i, s in enumerate(sequences):
        out[i, :len(s)] = s
    return torch.from_numpy(out)


def sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices in batches of similar length, shortest first (ties keep their order): a fixed
    order with little padding, for evaluation and inference."""
    order = np.argsort(np.asarray(lengths), kind="stable")
    return [[int(i) for i in order[start:start + batch_size]] for start in range(0, len(order), batch_size)]


def bucketed_batches(lengths: Sequence[int], batch_size: int, seed: int, bucket_batches: int = 50) -> list[list[int]]:
    """Shuffled batches of similar-length examples: shuffle, sort within windows of
    `bucket_batches` batches, cut into batches, shuffle the batch order. Little padding, still random."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(lengths))
    window = batch_size * bucket_batches
    batches = []
    for start in range(0, len(order), window):
        chunk = order[start:start + window]
        batches += [[int(chunk[j]) for j in b] for b in sorted_batches([lengths[i] for i in chunk], batch_size)]
    rng.shuffle(batches)
    return batches
